"""Where an in-process runtime's model runs: `thread` (in the app; the library default),
`process` (a child of its own; the commands' and the app's default, so each model's memory is its
own), `ray` (a Ray actor, extra `ray`), and room for more (`register_placement`). See `base.py`
for the contract."""

from workbench.runtimes.placement.base import (
    COMMAND_PLACEMENT,
    LIBRARY_PLACEMENT,
    OPERATIONS,
    ModelWorker,
    Placement,
    ProgressCallback,
    WorkerDied,
    WorkerSpec,
    create_placement,
    load_worker_class,
    placement_class,
    placement_names,
    register_placement,
)

__all__ = [
    "COMMAND_PLACEMENT",
    "LIBRARY_PLACEMENT",
    "OPERATIONS",
    "ModelWorker",
    "Placement",
    "ProgressCallback",
    "WorkerDied",
    "WorkerSpec",
    "create_placement",
    "load_worker_class",
    "placement_class",
    "placement_names",
    "register_placement",
]
