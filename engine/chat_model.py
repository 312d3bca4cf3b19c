"""The narrow contract every text generator implements."""

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol, TypedDict


class ChatMessage(TypedDict):
    role: str  # "system" | "user" | "assistant"
    content: str


@dataclass(frozen=True)
class GenerationParams:
    max_new_tokens: int = 160
    temperature: float = 0.0  # 0 means greedy
    top_p: float = 1.0
    repetition_penalty: float = 1.1  # on the reply's own tokens, never the prompt's
    seed: int | None = None
    stop: tuple[str, ...] = ()  # the reply ends before the first of these strings
    adapter: str | None = None  # a LoRA adapter by name; None: the model's default


class ChatModel(Protocol):
    name: str

    @property
    def pending(self) -> int:
        """Replies being generated or waiting for their turn."""
        ...

    def stream(
        self, messages: Sequence[ChatMessage], params: GenerationParams
    ) -> AsyncIterator[str]:
        """Yield text chunks of the assistant's reply as they are generated."""
        ...

    async def close(self) -> None: ...


async def generate(
    model: ChatModel, messages: Sequence[ChatMessage], params: GenerationParams
) -> str:
    """The whole reply at once, built on `stream`."""
    return "".join([chunk async for chunk in model.stream(messages, params)])
