"""Attention in float32 for bf16 models on a CPU without AMX.

torch's CPU attention kernel was measured several times slower in bf16 than in float32 for one
query against a long cache (0.38 ms vs 0.05 ms per layer for 460 cached tokens, on an earlier
machine of this project). The products before and after attention stay in bf16; only q, k and v
are widened for attention (the cache is kept in float32, see `float32_attention_cache`). On a CPU
with AMX the fused kernel is faster in bf16, and this is not used (measured on a 2-core Xeon with
AMX, transformers' Llama with two LoRA adapters, one decode step: 1 reply 27.5 ms in float32,
25.9 ms in bf16; 8 replies 56.4 and 52.1 ms; a 560-token prompt 336 and 276 ms). Without AMX it
was not measured again, so float32 stays there."""

from typing import Any

import torch
from transformers import AttentionInterface, AttentionMaskInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import sdpa_mask

NAME = "sdpa_float32"


def _sdpa_float32(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    **kwargs: Any,
) -> tuple[torch.Tensor, Any]:
    if query.shape[2] == 1:
        return one_query_attention(query, key, value, attention_mask, kwargs.get("scaling")), None
    out, weights = sdpa_attention_forward(
        module, query.float(), key.float(), value.float(), attention_mask, **kwargs
    )
    return out.to(query.dtype), weights


def one_query_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    mask: torch.Tensor | None,
    scaling: float | None,
) -> torch.Tensor:
    """Attention of one new token per reply as two small products: for a single query the CPU
    kernel's blocking costs more than the arithmetic (measured: 0.46 ms vs 0.1 ms per layer for
    8 replies of 450 tokens). The query heads that share a key/value head are multiplied as a
    group, so keys and values are never repeated."""
    batch, heads, _, dim = query.shape
    groups = heads // key.shape[1]
    grouped = query.float().reshape(batch, key.shape[1], groups, dim)
    scores = torch.matmul(grouped, key.float().transpose(2, 3)) * (scaling or dim**-0.5)
    if mask is not None:  # [batch, 1, 1, keys]: True (or 0) where a key may be attended to
        mask = mask[:, :, :, : key.shape[2]]
        scores = (
            scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
        )
    out = torch.matmul(scores.softmax(-1), value.float())  # [batch, kv heads, groups, dim]
    return out.reshape(batch, 1, heads, dim).to(query.dtype)


def amx() -> bool:
    """Whether this CPU has AMX tiles, where torch's fused attention is fast in bf16."""
    check = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(check and check())


def float32_attention_cache(model: Any) -> torch.dtype | None:
    """float32 when `model` attends in float32 (its cache then need not be widened each step)."""
    uses = getattr(getattr(model, "config", None), "_attn_implementation", None) == NAME
    return torch.float32 if uses else getattr(model, "cache_dtype", None)


def use_float32_attention(model: Any) -> None:
    """Make `model` (bf16, on the CPU) compute attention in float32."""
    AttentionInterface.register(NAME, _sdpa_float32)
    AttentionMaskInterface.register(NAME, sdpa_mask)  # the causal and padding mask sdpa expects
    model.set_attn_implementation(NAME)
