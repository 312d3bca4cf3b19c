"""Benchmarks (`make bench`): each prints JSON lines with the command that produced them."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODEL_CACHE = ROOT / ".cache" / "models"  # the converted bundled model, shared with the tests
