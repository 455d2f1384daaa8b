"""Which panes to open when the user names none: the embedded model on both in-process runtimes,
plus Ollama models when an Ollama server answers at `OLLAMA_HOST`, plus the models of the
OpenAI-compatible servers listed in `WORKBENCH_OPENAI_URLS` (comma-separated base URLs)."""

from __future__ import annotations

import os

import httpx

from workbench.runtimes.ollama_common import resolve_ollama_url
from workbench.runtimes.openai import api_key_for, normalize_base_url

DEFAULT_SPECS = ("transformers:smollm2", "torch:smollm2")
MAX_OLLAMA_PANES = 2
MAX_OPENAI_PANES = 2  # per server
OPENAI_URLS_VARIABLE = "WORKBENCH_OPENAI_URLS"


async def ollama_specs(host: str | None = None, timeout_s: float = 1.0) -> tuple[list[str], str]:
    """Pane specs for the models an Ollama server has, and a one-line notice for the user."""
    url = resolve_ollama_url(host)
    try:
        async with httpx.AsyncClient(timeout=timeout_s) as client:
            response = await client.get(f"{url}/api/tags")
            response.raise_for_status()
            models = [entry["name"] for entry in response.json().get("models", []) if entry.get("name")]
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return [], (f"No Ollama server answers at {url}: start one (`ollama serve`) or set OLLAMA_HOST, "
                    "then add a pane with ctrl+n (e.g. ollama:llama3.2:1b).")
    if not models:
        return [], f"Ollama at {url} has no models yet: `ollama pull llama3.2:1b`, then add a pane with ctrl+n."
    specs = [f"ollama:{name}@{url}" for name in models[:MAX_OLLAMA_PANES]]
    return specs, f"Ollama at {url}: opened {', '.join(models[:MAX_OLLAMA_PANES])}."


async def openai_specs(urls: str | None = None, timeout_s: float = 1.0) -> tuple[list[str], str]:
    """Pane specs for the models each OpenAI-compatible server in `urls` (default: the
    `WORKBENCH_OPENAI_URLS` variable) lists at `/v1/models`, and a one-line notice ("" when none are set)."""
    given = os.environ.get(OPENAI_URLS_VARIABLE, "") if urls is None else urls
    bases = [normalize_base_url(item) for item in given.split(",") if item.strip()]
    specs: list[str] = []
    notes: list[str] = []
    async with httpx.AsyncClient(timeout=timeout_s) as client:
        for base in bases:
            key = api_key_for(base)
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            try:
                response = await client.get(f"{base}/models", headers=headers)
                response.raise_for_status()
                models = [str(entry["id"]) for entry in response.json().get("data", []) if entry.get("id")]
            except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError) as error:
                notes.append(f"No OpenAI-compatible server answers at {base} ({type(error).__name__}).")
                continue
            if not models:
                notes.append(f"{base} lists no models.")
                continue
            specs += [f"openai:{model}@{base}" for model in models[:MAX_OPENAI_PANES]]
            notes.append(f"{base}: opened {', '.join(models[:MAX_OPENAI_PANES])}.")
    return specs, " ".join(notes)
