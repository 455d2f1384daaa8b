"""Actor specs (`runtime:model[@host]`) and the runtimes they name.

Runtimes are imported lazily by dotted path, so `workbench --help` does not load torch, and a
runtime whose dependencies are missing is reported as unavailable rather than breaking the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from workbench.errors import SpecError
from workbench.runtimes.base import Availability, ModelRuntimeActor

DEFAULT_RUNTIME = "transformers"


@dataclass(frozen=True, slots=True)
class RuntimeEntry:
    name: str
    target: str | type[ModelRuntimeActor]  # "module:Class" or the class itself
    summary: str
    aliases: tuple[str, ...] = ()
    default_model: str | None = None  # a spec may leave the model out (`openai:@URL`): this stands for it

    def load(self) -> type[ModelRuntimeActor]:
        if not isinstance(self.target, str):
            return self.target
        module_name, _, class_name = self.target.partition(":")
        module = importlib.import_module(module_name)
        cls = getattr(module, class_name)
        if not (isinstance(cls, type) and issubclass(cls, ModelRuntimeActor)):
            raise TypeError(f"{self.target} is not a ModelRuntimeActor")
        return cls


_RUNTIMES: dict[str, RuntimeEntry] = {}
_ALIASES: dict[str, str] = {}


def register_runtime(entry: RuntimeEntry) -> None:
    _RUNTIMES[entry.name] = entry
    for alias in entry.aliases:
        _ALIASES[alias] = entry.name


def unregister_runtime(name: str) -> None:
    entry = _RUNTIMES.pop(name, None)
    if entry is not None:
        for alias in entry.aliases:
            _ALIASES.pop(alias, None)


for _entry in (
    RuntimeEntry("transformers", "workbench.runtimes.transformers:TransformersRuntimeActor",
                 "Hugging Face transformers, in process", ("hf",)),
    RuntimeEntry("torch", "workbench.runtimes.torch:TorchRuntimeActor",
                 "workbench's own llama engine on plain PyTorch, in process"),
    RuntimeEntry("ollama-rest", "workbench.runtimes.ollama_rest:OllamaRESTRuntimeActor",
                 "Ollama's HTTP API, with httpx", ("ollama",)),
    RuntimeEntry("ollama-lib", "workbench.runtimes.ollama_lib:OllamaLibRuntimeActor",
                 "Ollama through the ollama Python library"),
    RuntimeEntry("ollama-cli", "workbench.runtimes.ollama_cli:OllamaCLIRuntimeActor",
                 "Ollama through `ollama run`, as a subprocess"),
    RuntimeEntry("openai", "workbench.runtimes.openai:OpenAIRuntimeActor",
                 "any OpenAI-compatible server (llama.cpp, vLLM, SGLang, LM Studio...), with httpx",
                 default_model="-"),
):
    register_runtime(_entry)


def runtime_names() -> list[str]:
    return list(_RUNTIMES)


def _valid_forms() -> str:
    names = ", ".join(sorted(_RUNTIMES))
    return f"write runtime:model[@host], where runtime is one of: {names}"


@dataclass(frozen=True, slots=True)
class ActorSpec:
    """`runtime:model[@host]`: `torch:smollm2`, `ollama:llama3.2:1b@http://gpu-box:11434`.

    A bare model name (`smollm2`) means the default runtime, transformers.
    """

    runtime: str
    model: str
    host: str | None = None

    def __str__(self) -> str:
        return f"{self.runtime}:{self.model}" + (f"@{self.host}" if self.host else "")


def parse_spec(text: str) -> ActorSpec:
    spec = text.strip()
    if not spec:
        raise SpecError(f"empty actor spec: {_valid_forms()}")
    if any(ch.isspace() for ch in spec):
        raise SpecError(f"actor spec {text!r} contains spaces: {_valid_forms()}")
    runtime, colon, rest = spec.partition(":")
    if not colon:
        if runtime in _RUNTIMES or runtime in _ALIASES:
            raise SpecError(f"actor spec {text!r} names a runtime but no model: {_valid_forms()}")
        runtime, rest = DEFAULT_RUNTIME, spec
    runtime = _ALIASES.get(runtime, runtime)
    if runtime not in _RUNTIMES:
        raise SpecError(f"unknown runtime {runtime!r} in {text!r}: {_valid_forms()}")
    # The first "@" ends the model: a host may itself hold one (http://user:pass@host), model names don't.
    model, at, host = rest.partition("@")
    if not model and _RUNTIMES[runtime].default_model is not None:
        model = _RUNTIMES[runtime].default_model or ""
    if not model:
        raise SpecError(f"actor spec {text!r} has no model: {_valid_forms()}")
    if at and not host:
        raise SpecError(f"actor spec {text!r} ends with '@' but names no host: {_valid_forms()}")
    return ActorSpec(runtime, model, host or None)


def runtime_class(name: str) -> type[ModelRuntimeActor]:
    name = _ALIASES.get(name, name)
    if name not in _RUNTIMES:
        raise SpecError(f"unknown runtime {name!r}: {_valid_forms()}")
    return _RUNTIMES[name].load()


_PLACEMENT: contextvars.ContextVar[str | None] = contextvars.ContextVar("workbench_placement", default=None)


@contextlib.contextmanager
def using_placement(name: str | None) -> Iterator[None]:
    """Within this block (and the tasks started in it), `create_actor` places in-process runtimes'
    models with `name` ("thread", "process", ...) unless told otherwise. The commands use it for
    `--placement`; library code that sets nothing gets each runtime's own default (`thread`)."""
    if name is not None:
        from workbench.runtimes.placement import placement_class

        placement_class(name)  # an unknown name fails here, listing the valid ones
    token = _PLACEMENT.set(name)
    try:
        yield
    finally:
        _PLACEMENT.reset(token)


def placement_in_spec(spec: ActorSpec) -> tuple[str, str | None]:
    """An in-process runtime's `@...` names where its model runs, not a host: `@thread`, `@process`,
    `@ray` (the `--ray` cluster), `@ray:ADDRESS` (`ray:auto`, `ray:local`, `ray:HOST:6379`) or
    `@ray://HOST:10001`. Returns (placement, Ray address or None)."""
    from workbench.runtimes.placement import placement_names

    where = spec.host or ""
    if where in placement_names():
        return where, None
    if where.startswith("ray://"):
        return "ray", where
    if where.startswith("ray:"):
        return "ray", where.removeprefix("ray:")
    raise SpecError(f"{spec.runtime} runs its model in workbench, so {spec}'s '@{where}' must name a placement: "
                    f"{', '.join(placement_names())}, ray:ADDRESS or ray://HOST:10001")


def create_actor(spec: str | ActorSpec, **options: Any) -> ModelRuntimeActor:
    """Build (not start) the actor a spec names; `options` go to its constructor (threads, limit...).

    `placement=` applies to in-process runtimes only (others run where their server or program is,
    and ignore it); when not given, the one chosen by `using_placement` applies. An in-process spec's
    `@placement` (`torch:smollm2@ray`) chooses for that actor alone (see `placement_in_spec`).
    """
    from workbench.runtimes.inprocess import InProcessModelRuntimeActor

    parsed = spec if isinstance(spec, ActorSpec) else parse_spec(spec)
    cls = runtime_class(parsed.runtime)
    if issubclass(cls, InProcessModelRuntimeActor) and cls.worker_factory is not None:
        chosen = options.pop("placement", None) or _PLACEMENT.get()
        if parsed.host is not None:  # `torch:smollm2@ray`: this actor's own placement wins
            chosen, address = placement_in_spec(parsed)
            if address is not None:
                options["placement_options"] = {"address": address, **options.get("placement_options", {})}
        if chosen is not None:
            options["placement"] = chosen
    else:
        options.pop("placement", None)
    return cls(parsed.model, host=parsed.host, **options)


@dataclass(frozen=True, slots=True)
class RuntimeReport:
    name: str
    summary: str
    family: str
    availability: Availability


async def _report(entry: RuntimeEntry, host: str | None) -> RuntimeReport:
    try:
        cls = entry.load()
    except Exception as error:  # a missing dependency: report it, don't break the listing
        return RuntimeReport(entry.name, entry.summary, "?", Availability(False, f"cannot load: {error}"))
    try:
        availability = await cls.availability(host)
    except Exception as error:
        availability = Availability(False, f"availability check failed: {error}")
    return RuntimeReport(entry.name, entry.summary, cls.family, availability)


async def list_runtimes(host: str | None = None) -> list[RuntimeReport]:
    """Every known runtime with whether it can run here, and why not."""
    return list(await asyncio.gather(*(_report(entry, host) for entry in _RUNTIMES.values())))
