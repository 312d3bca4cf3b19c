"""Attention in float32 for bf16 models on the CPU.

torch's CPU attention kernel is several times slower in bf16 than in float32 for one query
against a long cache (measured: 0.38 ms vs 0.05 ms per layer for 460 cached tokens). The
products before and after attention stay in bf16; only q, k and v are widened for the kernel.
"""

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
    out, weights = sdpa_attention_forward(
        module, query.float(), key.float(), value.float(), attention_mask, **kwargs
    )
    return out.to(query.dtype), weights


def use_float32_attention(model: Any) -> None:
    """Make `model` (bf16, on the CPU) compute attention in float32."""
    AttentionInterface.register(NAME, _sdpa_float32)
    AttentionMaskInterface.register(NAME, sdpa_mask)  # the causal and padding mask sdpa expects
    model.set_attn_implementation(NAME)
