"""Which panes to open when the user names none: the embedded model on both in-process runtimes,
plus Ollama models when an Ollama server answers at `OLLAMA_HOST`."""

from __future__ import annotations

import httpx

from workbench.runtimes.ollama_common import resolve_ollama_url

DEFAULT_SPECS = ("transformers:smollm2", "torch:smollm2")
MAX_OLLAMA_PANES = 2


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
