"""Text generation: a narrow `ChatModel` contract and the models that implement it.

`LocalModel` pulls in torch and transformers, and `RemoteModel` the openai SDK, so each is loaded
on first access only: importing `engine` for its contract stays light.
"""

from typing import TYPE_CHECKING, Any

from engine.bundled import shipped_adapter
from engine.chat_model import ChatMessage, ChatModel, GenerationParams, generate
from engine.cpu_priority import as_batch_job
from engine.errors import EngineError, ModelBusy

if TYPE_CHECKING:
    from engine.local_model import LocalModel
    from engine.remote_model import RemoteModel

__all__ = [
    "ChatMessage",
    "ChatModel",
    "EngineError",
    "GenerationParams",
    "LocalModel",
    "ModelBusy",
    "RemoteModel",
    "as_batch_job",
    "generate",
    "shipped_adapter",
]


def __getattr__(name: str) -> Any:
    if name == "LocalModel":
        from engine.local_model import LocalModel

        return LocalModel
    if name == "RemoteModel":
        from engine.remote_model import RemoteModel

        return RemoteModel
    raise AttributeError(f"module 'engine' has no attribute {name!r}")
