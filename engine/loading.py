"""Loading a base causal LM with the chosen quantization, and LoRA adapters on top of it."""

import logging
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

from engine.bundled import resolve_model
from engine.errors import EngineError

log = logging.getLogger(__name__)

Dtype = Literal["auto", "float32", "bfloat16"]
Quantization = Literal["none", "int8", "nf4"]


def bf16_hardware() -> bool:
    """Whether this machine computes in bfloat16: a GPU, or a CPU with AVX-512 BF16 or AMX
    (oneDNN's test; the CPU kernels of engine.cpu_linear need it)."""
    return torch.cuda.is_available() or bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def fast_dtype(dtype: Dtype) -> Literal["float32", "bfloat16"]:
    """`auto`: bfloat16 where the hardware computes in it (a GPU, or a CPU with AVX-512 BF16 or
    AMX), else float32: without those instructions bfloat16 matrix products are emulated, and
    measured on an AVX2 CPU even one 2048x2048 product took over a minute (float32: 0.14 s)."""
    if dtype != "auto":
        return dtype
    return "bfloat16" if bf16_hardware() else "float32"


def load_base(
    source: str | None, cache_dir: Path, dtype: Dtype, quantization: Quantization
) -> tuple[Any, Any]:
    """Tokenizer and model of `source` (None: the bundled SmolLM2-135M-Instruct GGUF).

    `int8` and `nf4` quantize the linear layers with bitsandbytes, which runs on the CPU too;
    `dtype` is then the dtype of everything else and of the computation.
    """
    path = resolve_model(source, cache_dir)
    torch_dtype = getattr(torch, fast_dtype(dtype))
    kwargs: dict[str, Any] = {"dtype": torch_dtype}
    if quantization == "int8":
        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
    elif quantization == "nf4":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch_dtype
        )
    if quantization != "none":
        kwargs["device_map"] = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except (OSError, ValueError, ImportError) as exc:
        raise EngineError(f"Could not load the model from {path}: {exc}") from exc
    if tokenizer.chat_template is None:
        raise EngineError(f"The model at {path} has no chat template; use an instruct model.")
    model.eval()
    log.info("model loaded from %s (%s, quantization %s)", path, dtype, quantization)
    return tokenizer, model


def attach_adapters(model: Any, adapters: Mapping[str, Path]) -> Any:
    """`model` with every LoRA adapter of `adapters` (name -> peft directory) loaded into it.

    One request may then use any of them by name, and one batch may mix them.
    """
    if not adapters:
        return model
    from peft import PeftModel

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    peft_model: Any = None
    for name, directory in adapters.items():
        if not (Path(directory) / "adapter_config.json").is_file():
            raise EngineError(
                f"Adapter {name!r}: {directory} is not a LoRA adapter directory (it has no "
                "adapter_config.json); check ANSWERDESK_ADAPTERS."
            )
        try:
            with warnings.catch_warnings():
                # peft reads transformers' deprecated `is_gradient_checkpointing`: a warning for
                # peft's authors, printed on every start of every operator's server.
                warnings.filterwarnings(
                    "ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning
                )
                if peft_model is None:
                    peft_model = PeftModel.from_pretrained(model, directory, adapter_name=name)
                else:
                    peft_model.load_adapter(directory, adapter_name=name)
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            raise EngineError(
                f"Adapter {name!r} in {directory} does not fit this model: {exc}"
            ) from exc
        log.info("adapter %s loaded from %s", name, directory)
    peft_model.eval()
    return peft_model
