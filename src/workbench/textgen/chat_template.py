"""A model's Jinja chat template, compiled once and rendered in a sandbox.

Chat templates ship inside model files and are untrusted code, so they run in jinja2's
`ImmutableSandboxedEnvironment` with the settings and helpers transformers gives them
(`trim_blocks`, `lstrip_blocks`, `loopcontrols`, a `tojson` that does not escape HTML,
`raise_exception`, `strftime_now`, and `namespace` refusing underscore names), so a template renders
here exactly as it does there -- without importing transformers. `{% generation %}` blocks (used by
some templates to mark assistant text for training) render their body unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import jinja2
import jinja2.ext
import jinja2.nodes
import jinja2.utils
from jinja2.sandbox import ImmutableSandboxedEnvironment

__all__ = ["ChatTemplate", "ChatTemplateError"]


class ChatTemplateError(ValueError):
    """The template does not compile, or raised an error (`raise_exception`) while rendering."""


class _GenerationBlock(jinja2.ext.Extension):
    """`{% generation %}...{% endgeneration %}`: render the body as is."""

    tags = {"generation"}

    def parse(self, parser: Any) -> jinja2.nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

    def _render(self, caller: Any) -> str:
        return str(caller())


class _Namespace(jinja2.utils.Namespace):
    """`namespace(...)` that refuses underscore-prefixed names (no reach into Python internals)."""

    def __init__(*args: Any, **kwargs: Any) -> None:  # noqa: N805 - same signature trick as jinja's Namespace
        self, rest = args[0], args[1:]
        attrs = dict(*rest, **kwargs)
        for name in attrs:
            _Namespace._check(name)
        jinja2.utils.Namespace.__init__(self, attrs)

    def __setitem__(self, name: str, value: Any) -> None:
        _Namespace._check(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check(name: Any) -> None:
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(f"chat templates cannot set {name!r} on a namespace")


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: Any = None, sort_keys: bool = False) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[_GenerationBlock, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    env.globals["namespace"] = _Namespace
    return env


class ChatTemplate:
    """One compiled template; :meth:`render` turns OpenAI-style messages into the prompt text."""

    def __init__(self, source: str, *, special_tokens: Mapping[str, str | None] | None = None) -> None:
        """`special_tokens`: names the template may use, such as `bos_token` and `eos_token`."""
        self.source = source
        self.special_tokens = {name: value for name, value in (special_tokens or {}).items() if value is not None}
        try:
            self._template = _environment().from_string(source)
        except jinja2.exceptions.TemplateSyntaxError as error:
            raise ChatTemplateError(f"the chat template does not compile (line {error.lineno}): {error.message}") from None

    @property
    def knows_thinking(self) -> bool:
        """Whether the template has a switch for thinking (Qwen3's `enable_thinking`)."""
        return "enable_thinking" in self.source

    def render(
        self, messages: Iterable[Mapping[str, Any]], *, add_generation_prompt: bool = True, **extra: Any
    ) -> str:
        """The prompt text; `extra` reaches the template as variables (e.g. `enable_thinking`)."""
        try:
            return self._template.render(
                messages=[dict(message) for message in messages],
                add_generation_prompt=add_generation_prompt,
                **self.special_tokens,
                **extra,
            )
        except jinja2.exceptions.TemplateError as error:
            raise ChatTemplateError(f"the chat template failed: {error}") from None
