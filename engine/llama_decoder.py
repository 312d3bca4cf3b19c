"""A lean forward pass for Llama-family models on the CPU (the bundled SmolLM2 is one).

With 4-bit weights a decode step's seven products per layer take less time than the forty-odd
small tensor operations transformers' Llama runs around them (measured on 2 cores, SmolLM2-135M,
one reply: 4.5-6.6 ms of products in an 18-20 ms step). `LlamaDecoder` computes the same function
with fewer of them: q, k and v come from one product and gate and up from another, the rotary
angles are computed once a step rather than once a layer, norms are torch's fused `rms_norm`,
and attention is written for the two shapes the scheduler sends (one new token per reply against
a padded cache, or one reply's several new tokens). It takes the call of a transformers model
(`input_ids`, `attention_mask`, `position_ids`, `past_key_values`, `logits_to_keep`).

On a CPU with AMX, attention runs in bf16 through torch's fused CPU kernel, on a bf16 cache: keys
and values are products of bf16 weights, so a float32 cache held the same numbers in twice the
bytes, and with eight replies of ~600 tokens reading the cache costs as much as reading the
weights. Measured on a 2-core Xeon with AMX (30 layers, one step): one new token for 8 replies
14.9 ms as float32 products, 10.4 ms fused in bf16; a 560-token prompt 109 ms in float32, 28 ms in
bf16; 11 new tokens of prompt lookup 4.7 ms and 3.3 ms. Without AMX attention and its cache stay
float32, as they were measured fastest there (`engine.attention`).
"""

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_outputs import CausalLMOutputWithPast

from engine.attention import amx, one_query_attention
from engine.cpu_linear import CpuLinear, check_cpu_kernels
from engine.thread_count import usable_cores


def fits(model: Any) -> bool:
    """Whether `model` is a transformers Llama whose function this decoder computes."""
    config = getattr(model, "config", None)
    return (
        type(model).__name__ == "LlamaForCausalLM"
        and getattr(config, "hidden_act", None) == "silu"
        and not getattr(config, "mlp_bias", False)
        and all(type(p) is nn.Linear for p in _projections(model))
    )


class LlamaDecoder(nn.Module):
    """`model`'s weights (a bf16 or float32 `LlamaForCausalLM` with plain linear layers, see
    `fits`) behind a faster forward pass; the model's own decoder layers are not kept."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        check_cpu_kernels(model.lm_head.weight.dtype)
        # Keys, values and attention: bf16 where torch's fused kernel runs it on AMX, else float32.
        bf16 = model.lm_head.weight.dtype == torch.bfloat16
        self.cache_dtype = torch.bfloat16 if bf16 and amx() else torch.float32
        config = model.config
        self.config = config
        inner = model.model
        self.embed = inner.embed_tokens
        self.rotary = inner.rotary_emb
        self.norm_weight = inner.norm.weight
        self.eps = float(config.rms_norm_eps)
        self.heads = int(config.num_attention_heads)
        self.kv_heads = int(config.num_key_value_heads)
        self.head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // self.heads)
        self.scaling = self.head_dim**-0.5
        tied = model.lm_head.weight is self.embed.weight
        # Packing the weights for fbgemm took 2.1 s of a start on one core; torch releases the
        # GIL while it packs, so they are packed on every usable core (1.3 s on two).
        with ThreadPoolExecutor(usable_cores(), thread_name_prefix="answerdesk-pack") as pool:
            head = pool.submit(CpuLinear, model.lm_head, keep_weight=tied)
            self.layers = nn.ModuleList(pool.map(_Layer, inner.layers))
            self.lm_head = head.result()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values: Any = None,
        logits_to_keep: int = 0,
        **_: Any,
    ) -> CausalLMOutputWithPast:
        """Logits of the last `logits_to_keep` positions (0: all); `past_key_values` (a cache of
        `engine.kv_cache` layers) grows by `input_ids`' width. `attention_mask` covers the cached
        and the new positions: 1 for a token, 0 for padding."""
        batch, width = input_ids.shape
        cached = past_key_values.get_seq_length() if past_key_values is not None else 0
        if position_ids is None:
            position_ids = torch.arange(cached, cached + width)[None].expand(batch, -1)
        hidden = self.embed(input_ids)
        cos, sin = (t[:, None] for t in self.rotary(hidden, position_ids))  # [batch, 1, width, dim]
        mask = _mask(attention_mask, batch, width, cached)
        for i, layer in enumerate(self.layers):
            cache = past_key_values.layers[i] if past_key_values is not None else None
            hidden = layer(self, hidden, cos, sin, mask, cache)
        if logits_to_keep:
            hidden = hidden[:, -logits_to_keep:]
        hidden = F.rms_norm(hidden, hidden.shape[-1:], self.norm_weight, self.eps)
        return CausalLMOutputWithPast(logits=self.lm_head(hidden), past_key_values=past_key_values)


class _Layer(nn.Module):
    def __init__(self, layer: Any) -> None:
        super().__init__()
        attention, mlp = layer.self_attn, layer.mlp
        self.qkv = CpuLinear(_joined(attention.q_proj, attention.k_proj, attention.v_proj), False)
        self.o_proj = CpuLinear(attention.o_proj, False)
        self.gate_up = CpuLinear(_joined(mlp.gate_proj, mlp.up_proj), False)
        self.down = CpuLinear(mlp.down_proj, False)
        self.in_norm = layer.input_layernorm.weight
        self.post_norm = layer.post_attention_layernorm.weight

    def forward(
        self,
        model: LlamaDecoder,
        hidden: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor | None,
        cache: Any,
    ) -> torch.Tensor:
        batch, width, size = hidden.shape
        heads, kv_heads, dim = model.heads, model.kv_heads, model.head_dim
        x = F.rms_norm(hidden, (size,), self.in_norm, model.eps)
        qkv = self.qkv(x).view(batch, width, heads + 2 * kv_heads, dim).transpose(1, 2)
        qk, values = qkv[:, : heads + kv_heads], qkv[:, heads + kv_heads :]
        half = dim // 2
        rotated = torch.cat([-qk[..., half:], qk[..., :half]], dim=-1)
        qk = qk * cos + rotated * sin  # transformers' apply_rotary_pos_emb, on q and k at once
        queries, keys = qk[:, :heads], qk[:, heads:]
        if cache is not None:
            keys, values = cache.update(keys, values)
        fused = model.cache_dtype == torch.bfloat16
        if width == 1 and fused:
            # One new token: the query heads that share a key/value head are one head's several
            # queries, so keys and values are never repeated; `mask` is [batch, 1, 1, keys].
            grouped = queries.reshape(batch, kv_heads, heads // kv_heads, dim)
            out = F.scaled_dot_product_attention(
                grouped, keys.to(grouped.dtype), values.to(grouped.dtype), mask, scale=model.scaling
            )
        elif width == 1:
            out = one_query_attention(queries, keys, values, mask, model.scaling)
        else:
            kind = model.cache_dtype
            out = F.scaled_dot_product_attention(
                queries.to(kind),
                keys.to(kind),
                values.to(kind),
                attn_mask=mask,
                scale=model.scaling,
                enable_gqa=True,
            ).transpose(1, 2)
        hidden = hidden + self.o_proj(out.reshape(batch, width, heads * dim).to(hidden.dtype))
        x = F.rms_norm(hidden, (size,), self.post_norm, model.eps)
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return hidden + self.down(F.silu(gate) * up)


def _mask(attention_mask: torch.Tensor | None, batch: int, width: int, cached: int) -> Any:
    """Where each new position may attend, [batch, 1, width, all positions] (True: yes), or None
    when it may attend to everything (one new token, no padding)."""
    padded = attention_mask is not None and batch > 1
    if width == 1:
        return attention_mask.bool()[:, None, None, :] if padded else None  # type: ignore[union-attr]
    keys = torch.arange(cached + width)
    allowed = keys[None, :] <= (cached + torch.arange(width))[:, None]  # causal
    allowed = allowed[None, None].expand(batch, 1, width, cached + width)
    if padded:
        allowed = allowed & attention_mask.bool()[:, None, None, :]  # type: ignore[union-attr]
        # A padding position attends to itself: no row is all masked (that gives NaN, which
        # would reach the real tokens through the cache: 0 x NaN is NaN).
        allowed = allowed | (keys[None, :] == (cached + torch.arange(width))[:, None])
    return allowed


def _joined(*linears: nn.Linear) -> nn.Linear:
    """One linear layer computing `linears`' outputs side by side."""
    joined = nn.Linear(linears[0].in_features, sum(p.out_features for p in linears), bias=False)
    joined.weight = nn.Parameter(torch.cat([p.weight.detach() for p in linears]), False)
    if any(p.bias is not None for p in linears):
        biases = [
            p.bias if p.bias is not None else p.weight.new_zeros(p.out_features) for p in linears
        ]
        joined.bias = nn.Parameter(torch.cat([b.detach() for b in biases]), False)
    return joined


def _projections(model: Any) -> list[Any]:
    """The seven projections of every decoder layer (None where one is missing); [None] when
    `model` has no decoder layers, so that it does not fit."""
    layers = getattr(getattr(model, "model", None), "layers", None) or [None]
    return [
        getattr(getattr(layer, part, None), name, None)
        for layer in layers
        for part, names in (("self_attn", _ATTENTION), ("mlp", _MLP))
        for name in names
    ]


_ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
_MLP = ("gate_proj", "up_proj", "down_proj")
