"""Fixtures for the session tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.sessions.helpers import ContextActor
from tests.support.scripted import ScriptedActor
from workbench.runtimes.registry import RuntimeEntry, register_runtime, unregister_runtime


@pytest.fixture
def test_runtimes() -> Iterator[None]:
    """`scripted:` and `context:` specs, so re-runs can create actors by spec as users do."""
    register_runtime(RuntimeEntry("scripted", ScriptedActor, "test actor"))
    register_runtime(RuntimeEntry("context", ContextActor, "test actor showing its context"))
    yield
    unregister_runtime("scripted")
    unregister_runtime("context")
