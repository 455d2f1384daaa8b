"""Model runtimes: one actor interface, four families, and the concrete runtimes built on them."""

from workbench.runtimes.base import (
    Availability,
    ChatRequest,
    EmbedRequest,
    GenerateRequest,
    ModelRuntimeActor,
    TextReply,
)
from workbench.runtimes.cli import CLIModelRuntimeActor, CommandLine
from workbench.runtimes.external import ExternalModelRuntimeActor
from workbench.runtimes.inprocess import InProcessModelRuntimeActor, NodeModelRuntimeActor
from workbench.runtimes.registry import (
    ActorSpec,
    RuntimeEntry,
    create_actor,
    list_runtimes,
    parse_spec,
    register_runtime,
)
from workbench.runtimes.rest import RESTfulModelRuntimeActor
from workbench.runtimes.types import (
    Capabilities,
    ChatMessage,
    Chunk,
    Completion,
    Embeddings,
    GenerationOptions,
    RuntimeStats,
    Usage,
)

__all__ = [
    "ActorSpec",
    "Availability",
    "CLIModelRuntimeActor",
    "Capabilities",
    "ChatMessage",
    "ChatRequest",
    "Chunk",
    "CommandLine",
    "Completion",
    "EmbedRequest",
    "Embeddings",
    "ExternalModelRuntimeActor",
    "GenerateRequest",
    "GenerationOptions",
    "InProcessModelRuntimeActor",
    "ModelRuntimeActor",
    "NodeModelRuntimeActor",
    "RESTfulModelRuntimeActor",
    "RuntimeEntry",
    "RuntimeStats",
    "TextReply",
    "Usage",
    "create_actor",
    "list_runtimes",
    "parse_spec",
    "register_runtime",
]
