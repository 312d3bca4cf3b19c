"""FAQ files in three formats: JSONL, CSV and Markdown.

- jsonl: one JSON object per line, the format of `sample_faq.jsonl`.
- csv: a header row naming the columns `question` and `answer` (required) and `id`,
  `alt_questions`, `tags`, `language` (optional); lists are separated by `|`.
- md: one `## question` heading per entry with the answer as the Markdown text below it. Optional
  metadata lines directly under the heading: `id: ...`, `alt: q1 | q2`, `tags: a | b`,
  `language: de`. Text before the first `## ` heading (a `# Title`, say) is ignored.

Entries without an id (csv and md) get one derived from the question (`slug_id`), so importing an
edited file again updates the same entries. Every error is a KnowledgeError naming `source:line`
and the field that is wrong; a file with any error yields no entries at all.
`parse_entries(format_entries(entries, fmt), fmt, source) == entries` holds for every format;
`format_entries` refuses entries a format cannot represent rather than write a lossy file.
"""

import csv
import hashlib
import io
import json
import os
import re
import secrets
import stat
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from knowledge.entry import FaqEntry
from knowledge.errors import KnowledgeError

FORMATS = ("jsonl", "csv", "md")

_SUFFIXES = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".md": "md", ".markdown": "md"}
_KNOWN = "jsonl (.jsonl, .json), csv (.csv), md (.md, .markdown)"

CSV_COLUMNS = ("id", "question", "answer", "alt_questions", "tags", "language")
_CSV_REQUIRED = ("question", "answer")
_LIST_FIELDS = ("alt_questions", "tags")
_SEPARATOR = "|"

# A level-2 ATX heading: "## text" or a bare "##"; "###" and "##text" are not headings.
_MD_HEADING = re.compile(r"^##(?:[ \t]+(.*?))?[ \t]*$")
_MD_META = re.compile(r"^(id|alt|tags|language):[ \t]*(.*?)[ \t]*$")
_MD_META_FIELDS = {"id": "id", "alt": "alt_questions", "tags": "tags", "language": "language"}

# Characters str.splitlines() breaks lines at that json.dumps(ensure_ascii=False) leaves raw.
_JSONL_ESCAPES = {"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"}

_SLUG_LENGTH = 64
_Data = dict[str, str | list[str]]


def guess_format(name: str) -> str:
    """The format a file name's suffix stands for, or a KnowledgeError saying what is known."""
    fmt = _SUFFIXES.get(Path(name).suffix.lower())
    if fmt is None:
        raise KnowledgeError(
            f"Cannot tell the format of {name!r} from its suffix; known formats are {_KNOWN}. "
            "Pass --format jsonl, --format csv or --format md."
        )
    return fmt


def slug_id(question: str) -> str:
    """A stable id for an entry without one: the question's slug plus 6 hex digits of its SHA-1."""
    question = question.strip()
    ascii_text = unicodedata.normalize("NFKD", question).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    slug = slug[:_SLUG_LENGTH].rstrip("-")
    digest = hashlib.sha1(question.encode("utf-8"), usedforsecurity=False).hexdigest()[:6]
    return f"{slug}-{digest}" if slug else digest


def parse_entries(text: str, fmt: str, source: str) -> list[FaqEntry]:
    """All entries of a file's `text`; errors name `source:line` and the field that is wrong."""
    _check_format(fmt)
    text = text.removeprefix("\ufeff")
    if fmt == "jsonl":
        numbered = _jsonl_entries(text, source)
    elif fmt == "csv":
        numbered = _csv_entries(text, source)
    else:
        numbered = _md_entries(text, source)
    return _collect(numbered, source)


def format_entries(entries: Sequence[FaqEntry], fmt: str) -> str:
    """The text of a file holding `entries`, which parse_entries reads back exactly."""
    _check_format(fmt)
    _check_writable(entries)
    for entry in entries:
        _check_representable(entry, fmt)
    if fmt == "jsonl":
        return "".join(_jsonl_line(entry) for entry in entries)
    if fmt == "csv":
        return _csv_text(entries)
    return "\n".join(_md_section(entry) for entry in entries)


def read_entries(path: Path, fmt: str | None = None) -> list[FaqEntry]:
    """The entries of the file at `path`, in `fmt` or the format its suffix names."""
    fmt = fmt or guess_format(path.name)
    _check_format(fmt)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KnowledgeError(f"Cannot read FAQ file {path}: {exc.strerror or exc}") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise KnowledgeError(
            f"FAQ file {path} is not UTF-8 text (invalid byte on line {line}); save it as UTF-8"
        ) from exc
    return parse_entries(text, fmt, str(path))


def write_entries(path: Path, entries: Iterable[FaqEntry], fmt: str | None = None) -> None:
    """Write `entries` to `path` atomically: readers see the old file or the whole new one."""
    fmt = fmt or guess_format(path.name)
    text = format_entries(list(entries), fmt)
    try:
        _replace_atomically(path, text.encode("utf-8"))
    except OSError as exc:
        raise KnowledgeError(f"Cannot write FAQ file {path}: {exc.strerror or exc}") from exc


# --- shared ---------------------------------------------------------------------------------


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise KnowledgeError(f"Unknown FAQ file format {fmt!r}; known formats are {_KNOWN}")


def _lines(text: str) -> list[str]:
    """Lines split at \\n, \\r\\n or \\r only, as editors number them; endings removed."""
    return [line.rstrip("\r\n") for line in io.StringIO(text, newline="")]


def _split_list(value: str) -> list[str]:
    return [part.strip() for part in value.split(_SEPARATOR) if part.strip()]


def _entry(data: _Data, where: str) -> FaqEntry:
    """Validate `data`, giving it an id derived from the question when it has none."""
    if not data.get("id"):
        question = data.get("question", "")
        data["id"] = slug_id(question) if isinstance(question, str) else ""
    return FaqEntry.from_dict(data, where)


def _collect(numbered: Iterable[tuple[int, FaqEntry]], source: str) -> list[FaqEntry]:
    """The entries in file order; an id used twice is an error naming both lines."""
    first_line: dict[str, int] = {}
    entries: list[FaqEntry] = []
    for line, entry in numbered:
        if entry.id in first_line:
            raise KnowledgeError(
                f"{source}:{line}: field 'id' repeats {entry.id!r} (first used on line "
                f"{first_line[entry.id]}); ids must be unique"
            )
        first_line[entry.id] = line
        entries.append(entry)
    if not entries:
        raise KnowledgeError(f"{source}: no FAQ entries found")
    return entries


def _check_writable(entries: Sequence[FaqEntry]) -> None:
    if not entries:
        raise KnowledgeError("No FAQ entries to write; a file without entries cannot be read back")
    seen: set[str] = set()
    for entry in entries:
        if entry.id in seen:
            raise KnowledgeError(f"Entry id {entry.id!r} is used twice; ids must be unique")
        seen.add(entry.id)


def _check_representable(entry: FaqEntry, fmt: str) -> None:
    """A KnowledgeError if reading `entry` back from `fmt` would not give the same entry."""
    where = f"Entry {entry.id!r}"
    normalised = FaqEntry.from_dict(entry.to_dict(), where)
    if normalised != entry or entry.language != entry.language.strip():
        raise KnowledgeError(
            f"{where} has untrimmed or empty texts; build entries with FaqEntry.from_dict"
        )
    if fmt == "jsonl":
        return
    if not entry.answer:
        raise KnowledgeError(f"{where} has an empty answer, which the {fmt} format cannot hold")
    for name in _LIST_FIELDS:
        for value in getattr(entry, name):
            if _SEPARATOR in value:
                raise KnowledgeError(
                    f"{where}: field '{name}' value {value!r} contains '|', which separates "
                    f"list items in the {fmt} format and so cannot be represented; use jsonl"
                )
    if fmt == "md":
        _check_markdown(entry, where)


def _check_markdown(entry: FaqEntry, where: str) -> None:
    one_line = {"question": [entry.question], "language": [entry.language]}
    one_line |= {name: list(getattr(entry, name)) for name in _LIST_FIELDS}
    for name, values in one_line.items():
        if any(len(_lines(value)) > 1 for value in values):
            raise KnowledgeError(
                f"{where}: field '{name}' spans several lines, which the md format cannot hold"
            )
    if "\r" in entry.answer:
        raise KnowledgeError(
            f"{where}: field 'answer' contains a carriage return, which the md format cannot hold"
        )
    if any(_MD_HEADING.match(line) for line in _lines(entry.answer)):
        raise KnowledgeError(
            f"{where}: field 'answer' has a line starting with '## ', which the md format reads "
            "as the next question; use '###' for headings inside answers"
        )


def _replace_atomically(path: Path, data: bytes) -> None:
    """Write a temporary file next to `path`, then rename it over `path`."""
    temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        if path.exists():
            os.chmod(temp, stat.S_IMODE(path.stat().st_mode))
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


# --- jsonl ----------------------------------------------------------------------------------


def _jsonl_entries(text: str, source: str) -> Iterator[tuple[int, FaqEntry]]:
    for number, line in enumerate(_lines(text), start=1):
        if not line.strip():
            continue
        where = f"{source}:{number}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise KnowledgeError(f"{where}: invalid JSON ({exc.msg})") from exc
        yield number, FaqEntry.from_dict(data, where)


def _jsonl_line(entry: FaqEntry) -> str:
    line = json.dumps(entry.to_dict(), ensure_ascii=False)
    for raw, escaped in _JSONL_ESCAPES.items():
        line = line.replace(raw, escaped)
    return line + "\n"


# --- csv ------------------------------------------------------------------------------------


def _csv_records(text: str, source: str) -> Iterator[tuple[int, list[str]]]:
    """Non-blank records with the line each starts on (a quoted field may span lines)."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    start = 1
    try:
        for record in reader:
            if any(cell.strip() for cell in record):
                yield start, record
            start = reader.line_num + 1
    except csv.Error as exc:
        raise KnowledgeError(f"{source}:{start}: invalid CSV ({exc})") from exc


def _csv_entries(text: str, source: str) -> Iterator[tuple[int, FaqEntry]]:
    header: list[str] | None = None
    for line, record in _csv_records(text, source):
        if header is None:
            header = _csv_header(record, f"{source}:{line}")
        else:
            yield line, _csv_entry(header, record, f"{source}:{line}")


def _csv_header(record: list[str], where: str) -> list[str]:
    names = [cell.strip().lower() for cell in record]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise KnowledgeError(f"{where}: column(s) {_quoted(repeated)} appear more than once")
    unknown = [name for name in names if name not in CSV_COLUMNS]
    missing = [name for name in _CSV_REQUIRED if name not in names]
    problems = []
    if unknown:
        problems.append(f"unknown column(s) {_quoted(unknown)}")
    if missing:
        problems.append(f"missing required column(s) {_quoted(missing)}")
    if problems:
        raise KnowledgeError(
            f"{where}: {'; '.join(problems)}. The first row must be a header naming the columns "
            f"question and answer, and optionally {', '.join(_csv_optional())}"
        )
    return names


def _csv_optional() -> list[str]:
    return [name for name in CSV_COLUMNS if name not in _CSV_REQUIRED]


def _quoted(names: Iterable[str]) -> str:
    return ", ".join(repr(name) for name in names)


def _csv_entry(header: list[str], record: list[str], where: str) -> FaqEntry:
    if len(record) != len(header):
        raise KnowledgeError(
            f"{where}: {len(record)} fields but the header has {len(header)} columns "
            "(quote fields that contain commas)"
        )
    cells = dict(zip(header, record, strict=True))
    for name in _CSV_REQUIRED:
        if not cells[name].strip():
            raise KnowledgeError(f"{where}: field '{name}' is required and must not be empty")
    data: _Data = {"question": cells["question"], "answer": cells["answer"]}
    data["id"] = cells.get("id", "").strip()
    for name in _LIST_FIELDS:
        data[name] = _split_list(cells.get(name, ""))
    if cells.get("language", "").strip():
        data["language"] = cells["language"].strip()
    return _entry(data, where)


def _csv_text(entries: Sequence[FaqEntry]) -> str:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for entry in entries:
        writer.writerow(
            [
                entry.id,
                entry.question,
                entry.answer,
                _SEPARATOR.join(entry.alt_questions),
                _SEPARATOR.join(entry.tags),
                entry.language,
            ]
        )
    return buffer.getvalue()


# --- md -------------------------------------------------------------------------------------


def _md_entries(text: str, source: str) -> Iterator[tuple[int, FaqEntry]]:
    heading: tuple[int, str] | None = None
    body: list[tuple[int, str]] = []
    for number, line in enumerate(_lines(text), start=1):
        match = _MD_HEADING.match(line)
        if match is None:
            body.append((number, line))
            continue
        if heading is not None:
            yield heading[0], _md_entry(heading, body, source)
        heading, body = (number, match.group(1) or ""), []
    if heading is not None:
        yield heading[0], _md_entry(heading, body, source)


def _md_entry(heading: tuple[int, str], body: list[tuple[int, str]], source: str) -> FaqEntry:
    """One `## question` section: metadata lines directly under the heading, then the answer."""
    where = f"{source}:{heading[0]}"
    data: _Data = {"question": heading[1]}
    index = 0
    while index < len(body) and (match := _MD_META.match(body[index][1])):
        key, value = match.groups()
        field = _MD_META_FIELDS[key]
        if field in data:
            raise KnowledgeError(f"{source}:{body[index][0]}: metadata '{key}:' is given twice")
        data[field] = _split_list(value) if field in _LIST_FIELDS else value
        index += 1
    data["answer"] = "\n".join(line for _, line in body[index:]).strip()
    if not data["answer"]:
        raise KnowledgeError(
            f"{where}: field 'answer' is empty; write the answer below the '## ' heading"
        )
    return _entry(data, where)


def _md_section(entry: FaqEntry) -> str:
    lines = [f"## {entry.question}", f"id: {entry.id}"]
    if entry.alt_questions:
        lines.append(f"alt: {' | '.join(entry.alt_questions)}")
    if entry.tags:
        lines.append(f"tags: {' | '.join(entry.tags)}")
    if entry.language != "en":
        lines.append(f"language: {entry.language}")
    return "\n".join([*lines, "", entry.answer, ""])
