"""Int8 weights for decoding small batches fast on the CPU.

Decoding one reply reads every weight once per token, so its speed is the memory bandwidth
divided by the bytes of the weights. torch's packed int8 kernel (`_weight_int8pack_mm`, the one
torchao uses for weight-only int8 on CPU) multiplies a few rows by int8 weights about twice as
fast as bf16 weights; from about eight rows on, the plain bf16 product is faster again. So each
linear layer keeps both: int8 (one scale per output channel) for up to `ROWS_INT8` rows, its
bf16 weight for more (prompts and large batches).
"""

import torch
import torch.nn.functional as F
from torch import nn

from engine.errors import EngineError

ROWS_INT8 = 4


class Int8DecodeLinear(nn.Module):
    int8_weight: torch.Tensor
    int8_scale: torch.Tensor

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        weight = linear.weight.detach()
        scale = weight.float().abs().amax(dim=1).clamp(min=1e-12) / 127
        self.weight = linear.weight  # bf16; shared with a tied input embedding
        self.bias = linear.bias
        self.register_buffer(
            "int8_weight", torch.round(weight.float() / scale[:, None]).to(torch.int8)
        )
        self.register_buffer("int8_scale", scale.to(weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // x.shape[-1]
        if rows > ROWS_INT8:
            return F.linear(x, self.weight, self.bias)
        flat = x.reshape(rows, x.shape[-1])
        out = torch._weight_int8pack_mm(flat.contiguous(), self.int8_weight, self.int8_scale)
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], out.shape[-1])


def add_int8_decode(model: nn.Module) -> nn.Module:
    """Give every linear layer of `model` (bf16) an int8 copy for decoding small batches."""
    if not hasattr(torch, "_weight_int8pack_mm"):
        raise EngineError("This torch has no packed int8 kernel; set ANSWERDESK_INT8_DECODE=false.")
    if model.dtype != torch.bfloat16:
        raise EngineError("Int8 decoding needs ANSWERDESK_DTYPE=bfloat16 and no quantization.")
    for path, module in list(model.named_modules()):
        if "lora_" in path:  # an adapter's own small matrices stay as they are
            continue
        for name, child in list(module.named_children()):
            if type(child) is nn.Linear and "lora_" not in name:
                setattr(module, name, Int8DecodeLinear(child))
    return model
