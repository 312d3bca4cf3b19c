"""A causal LM loaded with transformers and run on this machine."""

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from transformers import (
    AsyncTextIteratorStreamer,
    AutoModelForCausalLM,
    AutoTokenizer,
    StoppingCriteria,
    StoppingCriteriaList,
)

from engine.bundled import resolve_model
from engine.chat_model import ChatMessage, GenerationParams
from engine.errors import EngineError, ModelBusy

log = logging.getLogger(__name__)

Dtype = Literal["float32", "bfloat16"]


class _Cancelled(StoppingCriteria):
    """Stops generation as soon as the consumer of the stream has gone away."""

    def __init__(self, event: threading.Event) -> None:
        self._event = event

    def __call__(
        self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any
    ) -> Any:
        return torch.full((input_ids.shape[0],), self._event.is_set(), dtype=torch.bool)


class LocalModel:
    """Generates on the CPU (or a GPU when present) in a worker thread, streaming text chunks.

    One generation runs at a time for now; requests wait their turn on an asyncio lock.
    """

    def __init__(self, model: Any, tokenizer: Any, name: str, max_waiting: int = 8) -> None:
        self._model = model
        self._tokenizer = tokenizer
        self._lock = asyncio.Lock()
        self._max_waiting = max_waiting
        self.name = name
        self.pending = 0  # requests waiting for or using the model

    @classmethod
    def load(
        cls,
        source: str | None,
        cache_dir: Path,
        dtype: Dtype = "float32",
        threads: int | None = None,
        max_waiting: int = 8,
    ) -> "LocalModel":
        """Load `source` (None = the bundled SmolLM2-135M-Instruct GGUF, a GGUF path, an HF
        directory or hub id)."""
        if threads:
            torch.set_num_threads(threads)
        path = resolve_model(source, cache_dir)
        try:
            tokenizer = AutoTokenizer.from_pretrained(path)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype))
        except (OSError, ValueError) as exc:
            raise EngineError(f"Could not load the model from {path}: {exc}") from exc
        if tokenizer.chat_template is None:
            raise EngineError(f"The model at {path} has no chat template; use an instruct model.")
        model.eval()
        log.info("model loaded from %s (%s)", path, dtype)
        return cls(model, tokenizer, source or "smollm2-135m-instruct", max_waiting)

    def count_tokens(self, text: str) -> int:
        return len(self._tokenizer(text, add_special_tokens=False)["input_ids"])

    async def stream(
        self, messages: Sequence[ChatMessage], params: GenerationParams
    ) -> AsyncIterator[str]:
        inputs = self._tokenizer.apply_chat_template(
            list(messages), add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        streamer = AsyncTextIteratorStreamer(
            self._tokenizer, skip_prompt=True, skip_special_tokens=True
        )
        cancel = threading.Event()
        kwargs: dict[str, Any] = {
            **inputs,
            "streamer": streamer,
            "max_new_tokens": params.max_new_tokens,
            "repetition_penalty": params.repetition_penalty,
            "stopping_criteria": StoppingCriteriaList([_Cancelled(cancel)]),
            "pad_token_id": self._tokenizer.pad_token_id or self._tokenizer.eos_token_id,
        }
        if params.temperature > 0:
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        errors: list[BaseException] = []

        def run() -> None:
            try:
                if params.seed is not None:
                    torch.manual_seed(params.seed)
                with torch.inference_mode():
                    self._model.generate(**kwargs)
            except BaseException as exc:  # reported to the consumer below
                errors.append(exc)
                streamer.end()

        if self.pending > self._max_waiting:  # one generating, max_waiting in line
            raise ModelBusy(self.pending, retry_after_s=5)
        self.pending += 1
        try:
            async with self._lock:
                thread = threading.Thread(target=run, name="answerdesk-generate", daemon=True)
                thread.start()
                try:
                    async for chunk in streamer:
                        if chunk:
                            yield chunk
                finally:
                    cancel.set()
                    await asyncio.to_thread(thread.join)
        finally:
            self.pending -= 1
        if errors:
            raise EngineError(f"Generation failed: {errors[0]!r}") from errors[0]

    async def close(self) -> None:
        return None
