"""Reading FAQ files. JSONL: one entry per line, the format of `sample_faq.jsonl`."""

import json
from importlib import resources
from pathlib import Path

from knowledge.entry import FaqEntry
from knowledge.errors import KnowledgeError


def sample_faq_path() -> Path:
    """The FAQ of a fictional online shop that ships with answerdesk."""
    return Path(str(resources.files("knowledge").joinpath("sample_faq.jsonl")))


def read_jsonl(path: Path) -> list[FaqEntry]:
    """All entries of a JSONL file, or a KnowledgeError naming the line and field that is wrong."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise KnowledgeError(f"Cannot read FAQ file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise KnowledgeError(f"FAQ file {path} is not UTF-8 text") from exc
    entries: list[FaqEntry] = []
    seen: set[str] = set()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise KnowledgeError(f"{where}: invalid JSON ({exc.msg})") from exc
        entry = FaqEntry.from_dict(data, where)
        if entry.id in seen:
            raise KnowledgeError(f"{where}: field 'id' repeats {entry.id!r}; ids must be unique")
        seen.add(entry.id)
        entries.append(entry)
    if not entries:
        raise KnowledgeError(f"FAQ file {path} has no entries")
    return entries
