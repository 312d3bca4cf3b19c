"""The sample FAQ that ships with answerdesk."""

from importlib import resources
from pathlib import Path


def sample_faq_path() -> Path:
    """The FAQ of a fictional online shop that ships with answerdesk."""
    return Path(str(resources.files("knowledge").joinpath("sample_faq.jsonl")))
