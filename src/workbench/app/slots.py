"""A pane's binding to its actor: what the spec was, the actor if it could be built, or why not.

Building an actor can fail (an unknown runtime, a runtime module whose dependencies are missing);
the pane then shows that reason plainly instead of the app crashing.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

from workbench.runtimes.base import ModelRuntimeActor
from workbench.runtimes.registry import create_actor

ActorFactory = Callable[[str], ModelRuntimeActor]
_ids = itertools.count(1)


@dataclass(eq=False)
class ActorSlot:
    id: str
    spec: str
    actor: ModelRuntimeActor | None
    error: str = ""

    @property
    def runtime(self) -> str:
        if self.actor is not None:
            return self.actor.runtime
        return self.spec.partition(":")[0] if ":" in self.spec else "?"

    @property
    def model(self) -> str:
        if self.actor is not None:
            return self.actor.model
        return self.spec.partition(":")[2] or self.spec


def build_slot(spec: str, factory: ActorFactory | None = None, slot_id: str | None = None) -> ActorSlot:
    """Build the actor a spec names (not started); any failure becomes the slot's `error`."""
    slot_id = slot_id or f"pane-{next(_ids)}"
    try:
        actor = (factory or create_actor)(spec)
    except ImportError as error:
        return ActorSlot(slot_id, spec, None, f"runtime not available here: {error}")
    except Exception as error:  # noqa: BLE001 - shown in the pane, whatever it was
        return ActorSlot(slot_id, spec, None, f"{type(error).__name__}: {error}")
    return ActorSlot(slot_id, spec, actor)
