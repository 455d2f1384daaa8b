"""Models workbench can run in process: the catalog, and loading with a converted-weights cache."""

from workbench.models.catalog import ModelEntry, installed_models, resolve_model

__all__ = ["ModelEntry", "installed_models", "resolve_model"]
