"""What the three Ollama runtimes (REST, library, CLI) share.

- `parse_ollama_host`: `OLLAMA_HOST` read exactly as Ollama's `envconfig.Host()` reads it (trimmed of
  spaces and quotes; scheme default http; port default 11434, or 80/443 when the scheme is given
  explicitly; bare host, `:port`, IPv6 with or without brackets, a proxy path), plus the
  "connectable" form Ollama's own client dials (0.0.0.0/:: become loopback).
- Request bodies: our OpenAI-shaped messages become Ollama messages (`images` as base64), and
  `GenerationOptions` become Ollama's `options` plus the top-level `think`, `keep_alive`, `format`.
- Metrics: the final chunk's nanosecond durations become `Usage.server`, labelled `ollama_*` and in
  seconds, beside the client-side TTFT/ITL the base class measures itself.
- The memory of a local Ollama: the process listening on the server's port, with its children
  (model runners), found with psutil.
"""

from __future__ import annotations

import ipaddress
import os
import time
from dataclasses import dataclass
from typing import Any

import psutil

from workbench.metrics.sampler import ProcessTarget
from workbench.runtimes.types import Capabilities, ChatMessage, Chunk, GenerationOptions, Usage, decode_data_url

DEFAULT_PORT = 11434
DEFAULT_HOST = "127.0.0.1"

# GenerationOptions.extra keys that Ollama takes at the top level of a request, not in `options`.
TOP_LEVEL_KEYS = ("keep_alive", "format")


@dataclass(frozen=True, slots=True)
class OllamaHost:
    """A parsed `OLLAMA_HOST`. `host` is empty for the `:port` form, as in Ollama. `userinfo` is the
    `user:password` of a `http://user:password@host` URL (for a server behind an authenticating proxy;
    Ollama itself has none): only `connect_url` carries it (the HTTP actors split it off again as
    basic auth, `rest.split_credentials`), never `url`."""

    scheme: str
    host: str
    port: int
    path: str = ""
    userinfo: str = ""

    @property
    def url(self) -> str:
        """As Ollama's `envconfig.Host().String()` prints it."""
        return f"{self.scheme}://{_join(self.host, self.port)}" + (f"/{self.path}" if self.path else "")

    @property
    def connect_url(self) -> str:
        """The URL a client dials: unspecified or empty hosts become loopback (Ollama's ConnectableHost)."""
        host = self.host
        try:
            address = ipaddress.ip_address(host) if host else None
        except ValueError:
            address = None
        if not host or (address is not None and address.is_unspecified):
            host = "::1" if address is not None and address.version == 6 else DEFAULT_HOST
        path = f"/{self.path}" if self.path else ""
        userinfo = f"{self.userinfo}@" if self.userinfo else ""
        return f"{self.scheme}://{userinfo}{_join(host, self.port)}{path}".rstrip("/")

    @property
    def is_local(self) -> bool:
        host = self.host
        if not host or host == "localhost":
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return address.is_loopback or address.is_unspecified


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_ollama_host(value: str | None = None) -> OllamaHost:
    """Parse like Ollama; `None` reads the `OLLAMA_HOST` environment variable."""
    text = (os.environ.get("OLLAMA_HOST", "") if value is None else value).strip().strip("\"'").strip()
    default_port = str(DEFAULT_PORT)
    scheme, sep, hostport = text.partition("://")
    if not sep:
        scheme, hostport = "http", text
        if text == "ollama.com":
            scheme, hostport = "https", "ollama.com:443"
    elif scheme == "http":
        default_port = "80"
    elif scheme == "https":
        default_port = "443"
    hostport, _, path = hostport.partition("/")
    userinfo, at, after = hostport.rpartition("@")  # user:password@ is no part of host:port
    if at:
        hostport = after
    split = _split_host_port(hostport)
    if split is None:
        host, port = DEFAULT_HOST, default_port
        bare = hostport.strip("[]")
        try:
            host = str(ipaddress.ip_address(bare))
        except ValueError:
            if hostport:
                host = hostport
    else:
        host, port = split
    try:
        number = int(port)
        if not 0 <= number <= 65535:
            raise ValueError(port)
    except ValueError:
        number = int(default_port)
    return OllamaHost(scheme, host, number, path.rstrip("/"), userinfo)


def _split_host_port(hostport: str) -> tuple[str, str] | None:
    """Go's net.SplitHostPort: None where it fails (no port, too many colons, bad brackets)."""
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0 or not hostport[end + 1 :].startswith(":"):
            return None
        return hostport[1:end], hostport[end + 2 :]
    host, colon, port = hostport.rpartition(":")
    if not colon or ":" in host or "[" in host or "]" in host:
        return None
    return host, port


def resolve_ollama_url(host: str | None) -> str:
    """The base URL for an actor spec's `@host`, else `OLLAMA_HOST`, else the default."""
    return parse_ollama_host(host).connect_url


# ----- requests ---------------------------------------------------------------------------------------
def ollama_messages(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    """OpenAI-shaped messages → Ollama's: text content, `images` as bare base64, `thinking` kept."""
    converted: list[dict[str, Any]] = []
    for message in messages:
        item: dict[str, Any] = {"role": message.role, "content": message.text}
        images = [_base64_of(url) for url in message.image_urls()]
        if images:
            item["images"] = images
        if message.thinking:
            item["thinking"] = message.thinking
        converted.append(item)
    return converted


def ollama_images(data_urls: list[str]) -> list[str]:
    return [_base64_of(url) for url in data_urls]


def _base64_of(data_url: str) -> str:
    import base64

    return base64.b64encode(decode_data_url(data_url)[1]).decode("ascii")


def ollama_options(options: GenerationOptions) -> dict[str, Any]:
    """Ollama's `options` object: our common options under Ollama's names, then `extra` (num_ctx...)."""
    mapped: dict[str, Any] = {
        "temperature": options.temperature,
        "top_p": options.top_p,
        "top_k": options.top_k,
        "seed": options.seed,
        "num_predict": options.max_tokens,
        "stop": options.stop or None,
    }
    mapped = {key: value for key, value in mapped.items() if value is not None}
    mapped.update({key: value for key, value in options.extra.items() if key not in TOP_LEVEL_KEYS})
    return mapped


_OURS = {"temperature": "temperature", "top_p": "top_p", "top_k": "top_k", "seed": "seed",
         "num_predict": "max_tokens", "stop": "stop"}


def options_from_ollama(options: dict[str, Any] | None, **top_level: Any) -> GenerationOptions:
    """The inverse of `request_fields`, for a server: Ollama's `options` (and `think`, `keep_alive`,
    `format`) → GenerationOptions. Unknown options go to `extra`; invalid values raise ValueError."""
    if options is not None and not isinstance(options, dict):
        raise ValueError("options must be a JSON object")
    fields: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in (options or {}).items():
        if key in _OURS:
            if key == "num_predict" and isinstance(value, int) and value < 0:
                continue  # -1: no limit, as in Ollama
            if key == "stop" and isinstance(value, str):
                value = [value]
            fields[_OURS[key]] = value
        else:
            extra[key] = value
    if top_level.get("think") is not None:
        fields["think"] = top_level["think"]
    for key in TOP_LEVEL_KEYS:
        if top_level.get(key) not in (None, ""):
            extra[key] = top_level[key]
    from pydantic import ValidationError

    try:
        return GenerationOptions(**fields, extra=extra)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors())
        raise ValueError(f"invalid options: {problems}") from None


def request_fields(options: GenerationOptions) -> dict[str, Any]:
    """The top-level request fields options decide: `options`, `think`, `keep_alive`, `format`."""
    fields: dict[str, Any] = {}
    mapped = ollama_options(options)
    if mapped:
        fields["options"] = mapped
    if options.think is not None:
        fields["think"] = options.think
    for key in TOP_LEVEL_KEYS:
        if options.extra.get(key) is not None:
            fields[key] = options.extra[key]
    return fields


# ----- answers -----------------------------------------------------------------------------------------
NS = 1e9


def server_metrics(final: dict[str, Any]) -> dict[str, float]:
    """Ollama's nanosecond metrics as labelled seconds and rates; absent fields stay absent."""
    server: dict[str, float] = {}
    for field in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration"):
        value = final.get(field)
        if isinstance(value, (int, float)) and value > 0:
            server[f"ollama_{field}_s"] = value / NS
    for field in ("prompt_eval_count", "eval_count"):
        value = final.get(field)
        if isinstance(value, (int, float)):
            server[f"ollama_{field}"] = float(value)
    for count, duration, label in (
        ("eval_count", "eval_duration", "ollama_eval_tokens_per_s"),
        ("prompt_eval_count", "prompt_eval_duration", "ollama_prompt_eval_tokens_per_s"),
    ):
        if final.get(count) and final.get(duration):
            server[label] = final[count] / final[duration] * NS
    return server


def usage_from_final(final: dict[str, Any]) -> Usage:
    return Usage(
        input_tokens=final.get("prompt_eval_count"),
        output_tokens=final.get("eval_count"),
        server=server_metrics(final),
    )


def chunks_from_item(item: dict[str, Any]) -> list[Chunk]:
    """One `/api/chat` or `/api/generate` stream object → our chunks (thinking first, then answer, then
    the final chunk with usage)."""
    message = item.get("message")
    if isinstance(message, dict):
        thinking, text = message.get("thinking") or "", message.get("content") or ""
    else:
        thinking, text = item.get("thinking") or "", item.get("response") or ""
    chunks: list[Chunk] = []
    if thinking:
        chunks.append(Chunk(thinking=thinking, tokens=None))
    if text:
        chunks.append(Chunk(text=text, tokens=None))
    if item.get("done"):
        chunks.append(Chunk(done=True, usage=usage_from_final(item), finish_reason=item.get("done_reason") or "stop"))
    return chunks


def pull_hint(model: str) -> str:
    return f"model {model!r} not found: pull it with `ollama pull {model}`"


# ----- memory of a local server -------------------------------------------------------------------------
def listening_pid(port: int) -> int | None:
    """The pid of the process listening on TCP `port` on this machine, when we may see it."""
    try:
        connections = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, OSError):
        return None
    for connection in connections:
        if connection.status == psutil.CONN_LISTEN and connection.laddr and connection.laddr.port == port:
            if connection.pid:
                return connection.pid
    return None


class ServerProcess:
    """Finds (once, then re-checks cheaply) the process tree of a local Ollama server.

    Looking a listener up scans every process's sockets, so a miss is retried at most every
    `retry_s` seconds: the sampler asks several times a second.
    """

    retry_s = 10.0

    def __init__(self, host: OllamaHost, name: str = "Ollama server") -> None:
        self.host = host
        self.name = name
        self._pid: int | None = None
        self._missed_at: float | None = None

    def target(self) -> ProcessTarget | None:
        if not self.host.is_local:
            return None
        if self._pid is not None and not psutil.pid_exists(self._pid):
            self._pid = None
        if self._pid is None:
            now = time.monotonic()
            if self._missed_at is not None and now - self._missed_at < self.retry_s:
                return None
            self._pid = listening_pid(self.host.port)
            self._missed_at = None if self._pid is not None else now
        if self._pid is None:
            return None
        return ProcessTarget(self._pid, include_children=True, label=f"{self.name} (pid {self._pid})")

    def tree_rss(self) -> int | None:
        target = self.target()
        if target is None:
            return None
        try:
            root = psutil.Process(target.pid)
            members = [root, *root.children(recursive=True)]
        except psutil.Error:
            return None
        total = 0
        for member in members:
            try:
                total += member.memory_info().rss
            except psutil.Error:
                continue
        return total


# ----- stats -----------------------------------------------------------------------------------------------
def same_model(name: str, wanted: str) -> bool:
    """Ollama names default to the `latest` tag: `llama3.2` and `llama3.2:latest` are one model."""

    def tagged(text: str) -> str:
        return text if ":" in text.rsplit("/", 1)[-1] else f"{text}:latest"

    return tagged(name) == tagged(wanted)


def stats_fields(model: str, show: dict[str, Any] | None, ps: dict[str, Any] | None,
                 server_rss: int | None) -> dict[str, Any]:
    """RuntimeStats fields from `/api/show` and `/api/ps` answers, and the local server tree's RSS."""
    details: dict[str, Any] = {}
    fields: dict[str, Any] = {"details": details, "device": "ollama server"}
    if show:
        info = show.get("details") or {}
        details["family"] = info.get("family")
        details["parameter_size"] = info.get("parameter_size")
        details["quantization"] = info.get("quantization_level")
        details["format"] = info.get("format")
        if show.get("capabilities") is not None:
            details["capabilities"] = list(show["capabilities"])
        count = (show.get("model_info") or {}).get("general.parameter_count")
        if isinstance(count, int):
            fields["parameters"] = count
        fields["dtype"] = info.get("quantization_level")
    if ps is not None:
        running = ps.get("models") or []
        loaded = next((m for m in running if same_model(m.get("name") or m.get("model", ""), model)), None)
        details["loaded"] = loaded is not None
        details["server_models_loaded"] = len(running)
        if loaded is not None:
            details["ps_size_bytes"] = loaded.get("size")
            details["ps_size_vram_bytes"] = loaded.get("size_vram")
            details["context_length"] = loaded.get("context_length")
            details["expires_at"] = loaded.get("expires_at")
    if server_rss is not None:
        details["server_tree_rss_bytes"] = server_rss
    # Several models share one server: the tree's RSS is theirs together, so this model's own memory
    # is what /api/ps says for it (size, of which size_vram on the GPU); the tree figure stays beside it.
    if details.get("ps_size_bytes"):
        fields["memory_bytes"] = details["ps_size_bytes"]
        details["memory_bytes_source"] = "/api/ps size of this model"
    elif server_rss is not None:
        fields["memory_bytes"] = server_rss
        details["memory_bytes_source"] = "local server process tree (shared by every model it serves)"
    return fields


def capabilities_note(show: dict[str, Any] | None) -> tuple[bool | None, bool | None]:
    """(vision, embedding) as `/api/show` `capabilities` says; None where the server does not say."""
    if not show or show.get("capabilities") is None:
        return None, None
    capabilities = set(show["capabilities"])
    return "vision" in capabilities, "embedding" in capabilities


def refine_capabilities(capabilities: Capabilities, model: str, show: dict[str, Any] | None) -> Capabilities:
    """`capabilities` narrowed by what `/api/show` says the model cannot do (vision, embedding)."""
    vision, embedding = capabilities_note(show)
    update: dict[str, Any] = {}
    notes = dict(capabilities.notes)
    if vision is False:
        update["summarize_image"] = False
        notes["summarize_image"] = f"/api/show says {model} has no vision capability"
    if embedding is False:
        update["embed"] = False
        notes["embed"] = f"/api/show says {model} has no embedding capability"
    return capabilities.model_copy(update={**update, "notes": notes}) if update else capabilities
