"""Faster linear layers for a bf16 model on the CPU.

Decoding reads every weight once per token, so its speed is set by how fast the kernels stream
the weights. Measured on this project's 2-core Xeon (AVX-512, AMX), all linear layers of
SmolLM2-135M per decode step:

| rows | `F.linear` bf16 | oneDNN bf16, weights prepacked | int8 (`_weight_int8pack_mm`) |
|---|---|---|---|
| 1 | 15.1 ms | 8.4 ms | 6.5 ms |
| 4 | 16.9 ms | 9.4 ms | 10.7 ms |
| 8 | 19.0 ms | 12.5 ms | 18.9 ms |

So each layer keeps its weight twice: prepacked for oneDNN (exactly the same results as
`F.linear`; prompts and batches) and int8 with one scale per output channel (one row: a lone
reply), both the ops torch's own CPU inductor and torchao use.
"""

import torch
from torch import nn

from engine.errors import EngineError

ROWS_INT8 = 1  # up to this many rows use the int8 weights


class CpuLinear(nn.Module):
    int8_weight: torch.Tensor
    int8_scale: torch.Tensor

    def __init__(self, linear: nn.Linear, keep_weight: bool) -> None:
        super().__init__()
        weight = linear.weight.detach()
        scale = weight.float().abs().amax(dim=1).clamp(min=1e-12) / 127
        self.bias = linear.bias
        self.out_features = linear.out_features
        self.register_buffer(
            "int8_weight", torch.round(weight.float() / scale[:, None]).to(torch.int8)
        )
        self.register_buffer("int8_scale", scale.to(weight.dtype))
        self.packed_weight = torch.ops.mkldnn._reorder_linear_weight(weight, 8)
        # The weight itself is kept only where another module shares it (a tied embedding).
        self.weight = linear.weight if keep_weight else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // x.shape[-1]
        if rows > ROWS_INT8:
            return torch.ops.mkldnn._linear_pointwise(
                x, self.packed_weight, self.bias, "none", [], ""
            )
        flat = x.reshape(rows, x.shape[-1]).contiguous()
        out = torch._weight_int8pack_mm(flat, self.int8_weight, self.int8_scale)
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features)

    def extra_bytes(self) -> int:
        """Memory of the prepacked weight, which is neither a parameter nor a buffer."""
        return self.packed_weight.numel() * self.packed_weight.element_size()


def use_cpu_linears(model: nn.Module) -> nn.Module:
    """Replace every linear layer of `model` (bf16, on the CPU) by a `CpuLinear`."""
    if not (hasattr(torch, "_weight_int8pack_mm") and torch.backends.mkldnn.is_available()):
        raise EngineError("This torch lacks the CPU kernels; set ANSWERDESK_CPU_KERNELS=false.")
    if next(model.parameters()).dtype != torch.bfloat16:
        raise EngineError(
            "ANSWERDESK_CPU_KERNELS needs ANSWERDESK_DTYPE=bfloat16 and no quantization."
        )
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
    footprint: int = model.get_memory_footprint()  # type: ignore[operator]
    return footprint + sum(m.extra_bytes() for m in model.modules() if isinstance(m, CpuLinear))
