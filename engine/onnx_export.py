"""Writing a torch model to an ONNX file, for onnxruntime to run (the knowledge base's question
encoder uses it; the composition root hands it over, since only engine/ imports torch)."""

import os
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from engine.errors import EngineError


def export_onnx(
    module: Any,
    forward: Callable[[dict[str, Any]], Any],
    sample: Mapping[str, Any],
    file: Path,
) -> None:
    """Trace `forward` (named input tensors -> one output tensor) of `module` on `sample`, with
    every input's first two axes (texts, tokens) left variable, into `file`: completely or not
    at all."""
    import torch

    class Traced(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.module = module  # its weights become the file's

        def forward(self, *inputs: torch.Tensor) -> Any:
            return forward(dict(zip(names, inputs, strict=True)))

    names = list(sample)
    file.parent.mkdir(parents=True, exist_ok=True)
    partial = file.with_name(f".{file.name}.{os.getpid()}")
    try:
        # The tracer warns about Python-level checks in transformers' masking code; callers
        # verify the export on padded batches against the module itself.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                Traced().eval(),
                tuple(sample.values()),
                str(partial),
                input_names=names,
                output_names=["output"],
                dynamic_axes={name: {0: "texts", 1: "tokens"} for name in names},
                dynamo=False,  # the TorchScript exporter: no extra packages, dynamic axes
                opset_version=17,
            )
        partial.replace(file)
    except Exception as exc:  # the exporter raises many kinds of errors
        raise EngineError(f"Could not export the model to ONNX: {exc}") from exc
    finally:
        partial.unlink(missing_ok=True)
