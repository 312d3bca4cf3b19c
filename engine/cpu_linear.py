"""Faster linear layers for a bf16 model on the CPU.

Decoding reads every weight once per token, so its speed is set by how fast the kernels stream
the weights. Measured on this project's 2-core EPYC (AVX-512 BF16), all linear layers of
SmolLM2-135M per decode step (30 layers, distinct weights, so they stream from memory):

| rows | oneDNN bf16, prepacked | int8 `_weight_int8pack_mm` | 4-bit `_weight_int4pack_mm_for_cpu` |
|---|---|---|---|
| 1 | 12.9-14.1 ms | 7.7 ms | 4.0-4.6 ms |
| 4 | 11.7-16.4 ms | 11.1 ms | 7.8-8.1 ms |
| 8 | 13.2-21.2 ms | 20.5-26.4 ms | 11.7-12.1 ms |
| 16 | 18.0 ms | 37.6 ms | 22.3 ms |

So each layer keeps its weight prepacked for oneDNN (exactly the same results as `F.linear`;
prompts and large batches) and a copy for up to eight rows (decode steps): in 4 bits when the
weight already lies on a 4-bit grid, as every linear weight of a Q4_1 GGUF file does (groups of 32
inputs with a scale and a minimum each; stored again that way it loses nothing), else in int8
with one scale per output channel (an adapter merged into the weights moves them off the grid;
int8 is then used for one row only). These are the ops torch's own CPU inductor and torchao use.

A float32 model (a CPU without bfloat16 instructions, where `auto` picks float32) keeps its
float32 weights for prompts and a copy in float16 for decode steps, multiplied by fbgemm's
kernel (AVX2; float16 weights widened on the fly, float32 products). The 4- and 8-bit kernels
above have no AVX2 code and crawl there. Measured on a 2-core AMD EPYC with AVX2 only (the 210
linear layers of one decode step of the bundled model, with distinct weights as in the model;
in brackets, its 49152-word output layer besides):

| rows | float32 | fbgemm, float16 weights | int8 `_weight_int8pack_mm` | 4-bit |
|---|---|---|---|---|
| 1 | 37.1 ms (+10.9) | 15.6 ms (+4.9) | 49.9 ms | 242 ms |
| 8 | 62.5 ms (+24.7) | 32.0 ms (+11.8) | 407 ms | 1,923 ms |
| 24 | 83.5 ms | 70.6 ms | | |
| 32 | 97.8 ms | 94.0 ms | | |

Float16 keeps 11 bits of each weight (bfloat16: 8), so the model loses nothing measurable.
"""

import warnings

import torch
from torch import nn

from engine.errors import EngineError

ROWS_INT4 = 8  # up to this many rows use the 4-bit weights
ROWS_INT8 = 1  # up to this many rows use the int8 weights (of a layer that has no 4-bit ones)
GROUP = 32  # inputs per 4-bit scale and zero, as in GGUF's Q4_0 / Q4_1 blocks
CHECK_ROWS = 64  # rows of a weight checked for a 4-bit grid at a time
ROWS_FP16 = 24  # float32 models: up to this many rows use the float16 weights (measured faster)


class CpuLinear(nn.Module):
    int4_weight: torch.Tensor | None
    int4_scales: torch.Tensor | None
    int8_weight: torch.Tensor | None
    int8_scale: torch.Tensor | None
    weight: torch.Tensor | None

    def __init__(self, linear: nn.Linear, keep_weight: bool) -> None:
        super().__init__()
        weight = linear.weight.detach()
        self.bias = linear.bias
        self.out_features = linear.out_features
        self.in_features = linear.in_features
        self.fp16_weight: torch.Tensor | None = None
        if weight.dtype == torch.float32:
            # fbgemm's packed float16 copy; prompts use the float32 weight itself.
            self.fp16_weight = torch.fbgemm_pack_gemm_matrix_fp16(weight)
            self.zero_bias = torch.zeros(self.out_features)  # the kernel needs one
            self.weight = linear.weight
            for name in ("int4_weight", "int4_scales", "int8_weight", "int8_scale"):
                self.register_buffer(name, None)
            return
        four_bit = _on_four_bit_grid(weight)
        self.register_buffer("int4_weight", None if four_bit is None else four_bit[0])
        self.register_buffer("int4_scales", None if four_bit is None else four_bit[1])
        int8 = None if four_bit is not None else _int8(weight)
        self.register_buffer("int8_weight", None if int8 is None else int8[0])
        self.register_buffer("int8_scale", None if int8 is None else int8[1])
        self.packed_weight = torch.ops.mkldnn._reorder_linear_weight(weight, 8)
        # The weight itself is kept only where another module shares it (a tied embedding).
        self.weight = linear.weight if keep_weight else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // x.shape[-1]
        if self.fp16_weight is not None:
            if rows > ROWS_FP16 and self.weight is not None:  # always there in float32
                return nn.functional.linear(x, self.weight, self.bias)
            bias = self.zero_bias if self.bias is None else self.bias
            flat = x.reshape(rows, x.shape[-1])
            out = torch.fbgemm_linear_fp16_weight(flat, self.fp16_weight, bias)
            return out.reshape(*x.shape[:-1], self.out_features)
        int4, int4_scales = self.int4_weight, self.int4_scales
        int8, int8_scale = self.int8_weight, self.int8_scale
        if int4 is not None and int4_scales is not None and rows <= ROWS_INT4:
            flat = x.reshape(rows, x.shape[-1]).contiguous()
            out = torch._weight_int4pack_mm_for_cpu(flat, int4, GROUP, int4_scales)
        elif int8 is not None and int8_scale is not None and rows <= ROWS_INT8:
            flat = x.reshape(rows, x.shape[-1]).contiguous()
            out = torch._weight_int8pack_mm(flat, int8, int8_scale)
        else:
            return torch.ops.mkldnn._linear_pointwise(
                x, self.packed_weight, self.bias, "none", [], ""
            )
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features)

    @property
    def four_bit(self) -> bool:
        return self.int4_weight is not None

    def extra_bytes(self) -> int:
        """Memory of the prepacked weight, which is neither a parameter nor a buffer."""
        if self.fp16_weight is not None:
            return self.out_features * self.in_features * 2
        return self.packed_weight.numel() * self.packed_weight.element_size()


def _int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`weight` in int8 with one scale per output channel."""
    scale = weight.float().abs().amax(dim=1).clamp(min=1e-12) / 127
    return torch.round(weight.float() / scale[:, None]).to(torch.int8), scale.to(weight.dtype)


def _on_four_bit_grid(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """`weight` packed for torch's 4-bit CPU kernel, with its scales and zeros ([groups, out, 2]),
    if every group of `GROUP` inputs holds at most 16 evenly spaced values from its minimum to its
    maximum (it was quantized that way); None otherwise. Checked `CHECK_ROWS` rows at a time: the
    temporaries stay in the CPU's cache, and a weight off the grid (say, with an adapter merged
    in) is turned down at its first rows (the bundled model's 121 weights, the shipped adapter
    merged: 2.0 s -> 0.56 s on 1 thread)."""
    rows, inputs = weight.shape
    if inputs % GROUP or rows % 16:  # the kernel packs outputs in sixteens
        return None
    levels = torch.empty(rows, inputs, dtype=torch.int32)
    scales = torch.empty(rows, inputs // GROUP, 2, dtype=weight.dtype)
    for start in range(0, rows, CHECK_ROWS):
        part = _grid(weight[start : start + CHECK_ROWS])
        if part is None:
            return None
        levels[start : start + CHECK_ROWS], scales[start : start + CHECK_ROWS] = part
    packed = torch._convert_weight_to_int4pack_for_cpu(levels, 1)
    return packed, scales.transpose(0, 1).contiguous()


def _grid(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The 4-bit levels of `weight`'s rows ([rows, inputs], int32) and each group's scale and
    zero ([rows, groups, 2]), or None when a group is off its grid."""
    rows, inputs = weight.shape
    w = weight.float().reshape(rows, inputs // GROUP, GROUP)
    low, high = torch.aminmax(w, dim=-1, keepdim=True)
    scale = ((high - low) / 15).clamp(min=1e-12).to(weight.dtype)
    zero = (low + 8 * scale.float()).to(weight.dtype)  # the kernel computes (q - 8) * scale + zero
    step, base = scale.float(), zero.float()
    levels = (w - base).div_(step).add_(8).round_().clamp_(0, 15)
    error = (levels - 8).mul_(step).add_(base).sub_(w).abs_()
    # Off the grid by more than a tenth of a step (beyond bf16's rounding of the weight): the
    # weight is not 4-bit, and storing it so would change the model.
    if bool((error > w.abs().mul_(2**-8).add_(0.1 * step)).any()):
        return None
    return levels.reshape(rows, inputs).to(torch.int32), torch.cat([scale, zero], dim=-1)


def fp16_kernel() -> bool:
    """Whether fbgemm's float16-weight kernel runs here (it needs AVX2)."""
    if "fbgemm" not in torch.backends.quantized.supported_engines:
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            packed = torch.fbgemm_pack_gemm_matrix_fp16(torch.ones(16, 16))
            torch.fbgemm_linear_fp16_weight(torch.ones(1, 16), packed, torch.zeros(16))
    except RuntimeError:
        return False
    return True


def check_cpu_kernels(dtype: torch.dtype) -> None:
    """Raise unless this torch and CPU have the kernels for a `dtype` model."""
    if dtype == torch.float32:
        if not fp16_kernel():
            raise EngineError(
                "This CPU or torch lacks fbgemm's float16 kernel (it needs AVX2); set "
                "ANSWERDESK_CPU_KERNELS=false."
            )
        # torch 2.13 calls the kernel deprecated once, at its first use; it is what this pin has.
        warnings.filterwarnings("ignore", message="fbgemm_linear_fp16_weight", category=UserWarning)
        return
    kernels = ("_weight_int8pack_mm", "_weight_int4pack_mm_for_cpu")
    if not (all(hasattr(torch, k) for k in kernels) and torch.backends.mkldnn.is_available()):
        raise EngineError("This torch lacks the CPU kernels; set ANSWERDESK_CPU_KERNELS=false.")
    if dtype != torch.bfloat16:
        raise EngineError(
            "ANSWERDESK_CPU_KERNELS needs ANSWERDESK_DTYPE bfloat16 or float32 and no quantization."
        )


def use_cpu_linears(model: nn.Module) -> nn.Module:
    """Replace every linear layer of `model` (bf16 or float32, on the CPU) by a `CpuLinear`."""
    check_cpu_kernels(next(model.parameters()).dtype)
    embeddings = getattr(model, "get_input_embeddings", lambda: None)()
    tied = embeddings.weight if isinstance(embeddings, nn.Embedding) else None
    for path, module in list(model.named_modules()):
        if "lora_" in path:  # an adapter's own small matrices stay as they are
            continue
        for name, child in list(module.named_children()):
            if type(child) is nn.Linear and "lora_" not in name:
                setattr(module, name, CpuLinear(child, keep_weight=child.weight is tied))
    return model


def weights_bytes(model: nn.Module) -> int:
    """Memory of `model`'s weights: parameters, buffers and prepacked copies."""
    tensors = {t.data_ptr(): t.numel() * t.element_size() for t in model.parameters()}
    tensors.update({t.data_ptr(): t.numel() * t.element_size() for t in model.buffers()})
    extra = sum(m.extra_bytes() for m in model.modules() if isinstance(m, CpuLinear))
    return sum(tensors.values()) + extra
