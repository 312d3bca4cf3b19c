"""A causal LM loaded with transformers and run on this machine, batching concurrent replies."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from engine import llama_decoder
from engine.attention import amx, float32_attention_cache, use_float32_attention
from engine.chat_model import ChatMessage, GenerationParams
from engine.cpu_linear import fp16_kernel, use_cpu_linears
from engine.errors import EngineError
from engine.loading import (
    Dtype,
    Quantization,
    attach_adapters,
    bf16_hardware,
    fast_dtype,
    load_base,
)
from engine.reply_text import ReplyText
from engine.scheduler import BASE, BatchScheduler, DecodeStats, Job

log = logging.getLogger(__name__)

BASE_NAME = "base"  # the adapter name that means "the base model, no adapter"


class LocalModel:
    """Generates on this machine. Every reply in progress shares one batched decode loop (see
    `engine.scheduler`); each request may pick one of the loaded LoRA adapters by name."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        name: str,
        *,
        adapters: Sequence[str] = (),
        default_adapter: str | None = None,
        merged_adapter: str | None = None,
        max_batch: int = 8,
        max_waiting: int = 8,
        max_wait_s: float | None = None,
        prompt_lookup: int = 10,
        threads: int | None = None,
        prompt_cache_mb: float = 128,
    ) -> None:
        """`merged_adapter` names the adapter already folded into `model`'s weights: requests
        for it (or for the default) get those weights, and the base model is not available.
        `prompt_cache_mb` bounds the keys and values of recent prompts kept for later prompts
        that begin the same way (`engine.prompt_cache`; 0: none)."""
        self._model = model
        self._tokenizer = tokenizer
        self.name = name
        self.adapters = tuple(adapters)
        self._merged = merged_adapter
        if default_adapter not in (None, BASE_NAME, merged_adapter, *self.adapters):
            raise EngineError(
                f"The default adapter {default_adapter!r} is not loaded; "
                f"loaded: {', '.join(self.adapters) or 'none'}."
            )
        self._default_adapter = default_adapter
        self._scheduler = BatchScheduler(
            model,
            _eos_ids(model, tokenizer),
            max_batch=max_batch,
            max_waiting=max_waiting,
            max_wait_s=max_wait_s,
            mixed_adapters=bool(self.adapters),
            prompt_lookup=prompt_lookup,
            threads=threads,
            cache_dtype=float32_attention_cache(model),
            prompt_cache_bytes=int(prompt_cache_mb * 2**20),
        )

    @classmethod
    def load(
        cls,
        source: str | None,
        cache_dir: Path,
        *,
        dtype: Dtype = "float32",
        quantization: Quantization = "none",
        adapters: Mapping[str, Path] | None = None,
        default_adapter: str | None = None,
        cpu_kernels: bool = False,
        threads: int | None = None,
        max_batch: int = 8,
        max_waiting: int = 8,
        max_wait_s: float | None = None,
        prompt_lookup: int = 10,
        prompt_cache_mb: float = 128,
    ) -> "LocalModel":
        """Load `source` (None = the bundled SmolLM2-135M-Instruct GGUF, a GGUF path, an HF
        directory or hub id), quantized as asked, with `adapters` (name -> peft directory).
        `dtype` auto is bfloat16 where the hardware has it, else float32; `cpu_kernels`
        (unquantized, on a CPU) switches the linear layers to faster kernels (cpu_linear) and a
        Llama-family model to a leaner forward pass (llama_decoder)."""
        torch.set_num_threads(1)  # only the decode thread computes on several (see scheduler)
        dtype = fast_dtype(dtype)
        tokenizer, model = load_base(source, cache_dir, dtype, quantization)
        adapters = dict(adapters or {})
        model = attach_adapters(model, adapters)
        merged = None
        if len(adapters) == 1 and default_adapter in adapters and quantization == "none":
            # Every request uses this one adapter: folded into the weights, it costs nothing a
            # token (measured, bf16: 31 ms a decode step as a LoRA layer, 21 ms merged).
            model, merged, adapters = model.merge_and_unload(), default_adapter, {}
        on_cpu = not torch.cuda.is_available()
        if cpu_kernels and quantization == "none" and on_cpu:
            if dtype == "bfloat16" and not bf16_hardware():
                log.warning("this CPU has no bfloat16 instructions: CPU kernels off; use float32")
            elif dtype == "float32" and not fp16_kernel():
                log.warning("this CPU has no AVX2 for fbgemm's float16 kernel: CPU kernels off")
            elif not adapters and llama_decoder.fits(model):
                model = llama_decoder.LlamaDecoder(model)
            else:
                model = use_cpu_linears(model)
        decoder = isinstance(model, llama_decoder.LlamaDecoder)  # it attends with its own kernel
        if dtype == "bfloat16" and quantization == "none" and on_cpu and not decoder and not amx():
            use_float32_attention(model)
        return cls(
            model,
            tokenizer,
            source or "smollm2-135m-instruct",
            adapters=list(adapters),
            default_adapter=default_adapter,
            merged_adapter=merged,
            max_batch=max_batch,
            max_waiting=max_waiting,
            max_wait_s=max_wait_s,
            prompt_lookup=prompt_lookup,
            threads=threads,
            prompt_cache_mb=prompt_cache_mb,
        )

    @property
    def pending(self) -> int:
        """Replies being generated or waiting for their turn."""
        return self._scheduler.pending

    @property
    def decode_stats(self) -> DecodeStats:
        return self._scheduler.stats

    def count_tokens(self, text: str) -> int:
        return len(self._tokenizer(text, add_special_tokens=False)["input_ids"])

    async def stream(
        self, messages: Sequence[ChatMessage], params: GenerationParams
    ) -> AsyncIterator[str]:
        prompt = self._tokenizer.apply_chat_template(
            list(messages), add_generation_prompt=True, return_dict=True
        )["input_ids"]
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue[str | BaseException | None] = asyncio.Queue()

        def deliver(item: str | BaseException | None) -> None:
            with contextlib.suppress(RuntimeError):  # the event loop is gone: nobody listens
                loop.call_soon_threadsafe(chunks.put_nowait, item)

        job = Job(
            prompt,
            params,
            self._adapter(params.adapter),
            ReplyText(self._tokenizer, params.stop),
            deliver,
        )
        self._scheduler.submit(job)
        try:
            while (item := await chunks.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            job.cancelled.set()  # a reader that went away frees its place in the batch

    def _adapter(self, name: str | None) -> str:
        name = name or self._default_adapter
        if name == BASE_NAME and self._merged is not None:
            raise EngineError(
                f"The adapter {self._merged!r} is merged into the model's weights (it is the "
                "only one loaded); start answerdesk with ANSWERDESK_ADAPTER=base for the base "
                "model."
            )
        if name in (None, BASE_NAME, self._merged):  # the model's own weights
            return BASE
        if name not in self.adapters:
            raise EngineError(
                f"No adapter named {name!r} is loaded; loaded: "
                f"{', '.join(self.adapters) or 'none'} (see ANSWERDESK_ADAPTERS)."
            )
        return name

    async def close(self) -> None:
        await asyncio.to_thread(self._scheduler.close)


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    """Every token that ends a reply: the tokenizer's and the generation config's."""
    ids = {tokenizer.eos_token_id}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(configured if isinstance(configured, list) else [configured])
    return {int(i) for i in ids if i is not None}
