"""`workbench` with the scripted test runtime registered, for tests that run the CLI as a subprocess.

`scripted:slow` answers one word every 50 ms, so a run lasts long enough to interrupt.
"""

from __future__ import annotations

import sys
from typing import Any

from tests.support.scripted import ScriptedActor
from workbench.cli import main
from workbench.runtimes.registry import RuntimeEntry, register_runtime


class CLIScriptedActor(ScriptedActor):
    def __init__(self, model: str = "echo", **kwargs: Any) -> None:
        super().__init__(model, delay_s=0.05 if model == "slow" else 0.0, **kwargs)


register_runtime(RuntimeEntry("scripted", CLIScriptedActor, "scripted test runtime"))

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
