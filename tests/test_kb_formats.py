"""FAQ files as JSONL, CSV and Markdown: exact round trips and errors that name the line."""

import os
import re
from pathlib import Path

import pytest

from knowledge import FaqEntry, KnowledgeError, sample_faq_path
from knowledge.formats import (
    FORMATS,
    format_entries,
    guess_format,
    parse_entries,
    read_entries,
    slug_id,
    write_entries,
)

TRICKY = [
    FaqEntry(
        id="returns-policy",
        question='Can I return "sale" items, too?',
        answer=(
            'Yes, within 30 days, "no questions asked".\n\n'
            "### How\n"
            "1. Pack the item, please.\n"
            "2. Print the label | stick it on.\n\n"
            "# Not a question, just a big heading\n"
            "tags: this line is answer text"
        ),
        alt_questions=("return policy, sale", 'what about "final sale"?'),
        tags=("returns", "sale, clearance"),
    ),
    FaqEntry(
        id="versand-de",
        question="Wie lange dauert der Versand nach Österreich?",
        answer="2\u20134 Werktage. Größere Pakete: 5 Tage 📦\nZeilenumbruch\u2028bleibt erhalten.",
        alt_questions=("Lieferzeit Österreich",),
        tags=("versand",),
        language="de",
    ),
    FaqEntry(id="minimal", question="Do you ship to Japan?", answer="はい、日本へ発送します。"),
    FaqEntry(
        id="ns:odd_id.1",
        question="What does ## mean, or a | pipe?",
        answer="id: answers may look like metadata\nalt: x | y",
    ),
]

JSON_A = '{"id": "a", "question": "Q1", "answer": "A"}'


@pytest.fixture(scope="module")
def sample() -> list[FaqEntry]:
    return read_entries(sample_faq_path())


def error(text: str, fmt: str, source: str = "faq") -> str:
    with pytest.raises(KnowledgeError) as info:
        parse_entries(text, fmt, source)
    return str(info.value)


# --- round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_tricky_entries_round_trip_exactly(fmt: str) -> None:
    assert parse_entries(format_entries(TRICKY, fmt), fmt, "x") == TRICKY


@pytest.mark.parametrize("fmt", FORMATS)
def test_sample_round_trips_through_files(fmt: str, sample: list[FaqEntry], tmp_path: Path) -> None:
    path = tmp_path / f"faq.{fmt}"
    write_entries(path, sample)
    assert read_entries(path) == sample
    assert os.listdir(tmp_path) == [path.name]  # the temporary file was renamed, not left over


def test_sample_has_32_entries(sample: list[FaqEntry]) -> None:
    assert len(sample) == 32
    assert len({entry.id for entry in sample}) == 32


def test_csv_keeps_carriage_returns_inside_fields() -> None:
    entries = [FaqEntry(id="crlf", question="Windows?", answer="line one\r\nline two\rthree")]
    assert parse_entries(format_entries(entries, "csv"), "csv", "x") == entries


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_byte_order_mark_and_crlf_line_ends_are_read(fmt: str) -> None:
    text = "\ufeff" + format_entries(TRICKY[:3], fmt).replace("\n", "\r\n")
    entries = parse_entries(text, fmt, "x")
    assert [entry.id for entry in entries] == [entry.id for entry in TRICKY[:3]]
    assert entries[1].answer == TRICKY[1].answer.replace("\n", "\r\n" if fmt == "csv" else "\n")


def test_write_replaces_an_existing_file_and_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "faq.md"
    path.write_text("old", encoding="utf-8")
    path.chmod(0o640)
    write_entries(path, TRICKY)
    assert read_entries(path) == TRICKY
    assert path.stat().st_mode & 0o777 == 0o640
    assert os.listdir(tmp_path) == ["faq.md"]


def test_a_write_that_cannot_be_represented_leaves_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "faq.csv"
    write_entries(path, TRICKY)
    before = path.read_bytes()
    bad = FaqEntry(id="bad", question="Q?", answer="A.", tags=("a|b",))
    with pytest.raises(KnowledgeError, match="'\\|'"):
        write_entries(path, [bad])
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["faq.csv"]


def test_write_into_a_missing_directory_is_a_knowledge_error(tmp_path: Path) -> None:
    with pytest.raises(KnowledgeError, match="Cannot write FAQ file"):
        write_entries(tmp_path / "nope" / "faq.jsonl", TRICKY)


# --- guess_format / read_entries ------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("faq.jsonl", "jsonl"),
        ("dir/FAQ.JSON", "jsonl"),
        ("faq.csv", "csv"),
        ("faq.md", "md"),
        ("faq.markdown", "md"),
    ],
)
def test_guess_format_from_the_suffix(name: str, fmt: str) -> None:
    assert guess_format(name) == fmt


@pytest.mark.parametrize("name", ["faq.txt", "faq", "upload"])
def test_guess_format_explains_what_is_known(name: str) -> None:
    with pytest.raises(KnowledgeError) as info:
        guess_format(name)
    assert all(fmt in str(info.value) for fmt in FORMATS)
    assert "--format" in str(info.value)


def test_read_with_an_explicit_format_ignores_the_suffix(tmp_path: Path) -> None:
    path = tmp_path / "faq.txt"
    path.write_text(format_entries(TRICKY, "md"), encoding="utf-8")
    assert read_entries(path, "md") == TRICKY


def test_read_errors_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(KnowledgeError, match=r"Cannot read FAQ file .*missing\.csv"):
        read_entries(tmp_path / "missing.csv")
    latin1 = tmp_path / "faq.csv"
    latin1.write_bytes("question,answer\nWo?,Österreich\n".encode("latin-1"))
    with pytest.raises(KnowledgeError, match="not UTF-8 text \\(invalid byte on line 2\\)"):
        read_entries(latin1)
    with pytest.raises(KnowledgeError, match="Unknown FAQ file format 'xml'"):
        read_entries(latin1, "xml")


def test_error_messages_name_the_path(tmp_path: Path) -> None:
    path = tmp_path / "faq.jsonl"
    path.write_text('{"id": "a", "question": "Q?", "answer": "A."}\n{"id": "b"}\n', "utf-8")
    with pytest.raises(KnowledgeError, match=f"^{re.escape(str(path))}:2: field 'question'"):
        read_entries(path)


# --- shared rules ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("text", ["", "\n\n", "\ufeff"])
def test_an_empty_file_is_an_error(fmt: str, text: str) -> None:
    assert error(text, fmt) == "faq: no FAQ entries found"


@pytest.mark.parametrize(
    ("fmt", "text", "line"),
    [
        ("jsonl", f"{JSON_A}\n\n{JSON_A.replace('Q1', 'Q2')}\n", 3),
        ("csv", 'id,question,answer\na,Q1,"A\nmore"\na,Q2,B\n', 4),
        ("md", "# FAQ\n\n## Q1\nid: a\n\nA\n\n## Q2\nid: a\n\nB\n", 8),
    ],
)
def test_a_repeated_id_names_both_lines(fmt: str, text: str, line: int) -> None:
    message = error(text, fmt)
    assert message.startswith(f"faq:{line}: field 'id' repeats 'a'")
    assert "first used on line" in message


def test_unknown_format() -> None:
    with pytest.raises(KnowledgeError, match="Unknown FAQ file format 'yaml'"):
        parse_entries("", "yaml", "x")
    with pytest.raises(KnowledgeError, match="Unknown FAQ file format 'yaml'"):
        format_entries(TRICKY, "yaml")


def test_slug_ids_are_stable_and_valid() -> None:
    assert slug_id("How do I reset my password?") == slug_id("  How do I reset my password? ")
    assert slug_id("How do I reset my password?").startswith("how-do-i-reset-my-password-")
    assert slug_id("Wie ändere ich meine Adresse?").startswith("wie-andere-ich-meine-adresse-")
    assert slug_id("Q") != slug_id("q")
    long = slug_id("word " * 40)
    assert len(long) <= 64 + 7 and not long[:-7].endswith("-")
    assert len(slug_id("こんにちは")) == 6
    for question in ("Q", "こんにちは", "?? ok ??", "word " * 40):
        FaqEntry.from_dict({"id": slug_id(question), "question": "q", "answer": "a"})


# --- jsonl ----------------------------------------------------------------------------------


def test_jsonl_errors_name_the_line_and_field() -> None:
    good = '{"id": "a", "question": "Q?", "answer": "A."}'
    assert error(f"{good}\n\n{{oops\n", "jsonl", "faq.jsonl").startswith(
        "faq.jsonl:3: invalid JSON"
    )
    message = error(f'{good}\n{{"id": "b", "question": "Q?"}}\n', "jsonl", "faq.jsonl")
    assert message.startswith("faq.jsonl:2: field 'answer' is required")


def test_jsonl_line_numbers_ignore_unicode_line_separators() -> None:
    text = '{"id": "a", "question": "Q?", "answer": "A\u2028B"}\n{"id": "b"}\n'
    assert error(text, "jsonl").startswith("faq:2: field 'question'")


# --- csv ------------------------------------------------------------------------------------


def test_csv_line_numbers_count_the_lines_of_quoted_fields() -> None:
    text = (
        "question,answer,tags\n"
        'Q one?,"A multi-line\nanswer, with a comma\nand ""quotes""",x\n'  # lines 2-4
        "\n"  # line 5 is blank
        "Q two?,,y\n"  # line 6: no answer
    )
    assert error(text, "csv", "faq.csv") == (
        "faq.csv:6: field 'answer' is required and must not be empty"
    )


def test_csv_bad_record_right_after_a_multi_line_field() -> None:
    text = 'question,answer\n"Q\none?",A\n,A2\n'
    assert error(text, "csv", "faq.csv").startswith("faq.csv:4: field 'question' is required")


def test_csv_error_in_a_multi_line_record_names_its_first_line() -> None:
    text = 'id,question,answer\nok,"Q\none?",A\nnot ok,Q2?,"A2\nspans\nlines"\n'
    assert error(text, "csv", "faq.csv").startswith("faq.csv:4: field 'id' must be")


def test_csv_optional_columns_and_slug_ids() -> None:
    text = (
        "Question , ANSWER,alt_questions,tags\nHow do I pay?,By card.,payment | pay ||,billing|\n"
    )
    [entry] = parse_entries(text, "csv", "x")
    assert entry == FaqEntry(
        id=slug_id("How do I pay?"),
        question="How do I pay?",
        answer="By card.",
        alt_questions=("payment", "pay"),
        tags=("billing",),
    )


def test_csv_empty_id_and_language_cells_take_the_defaults() -> None:
    text = "id,question,answer,language\n,Q?,A.,\nq2,Q2?,A2.,de\n"
    first, second = parse_entries(text, "csv", "x")
    assert (first.id, first.language) == (slug_id("Q?"), "en")
    assert (second.id, second.language) == ("q2", "de")


def test_csv_unknown_columns_are_named() -> None:
    message = error("question,answer,categroy,notes\nQ?,A.,x,y\n", "csv", "faq.csv")
    assert message.startswith("faq.csv:1: unknown column(s) 'categroy', 'notes'")


def test_csv_requires_a_header() -> None:
    message = error("How do I pay?,By card.\n", "csv", "faq.csv")
    assert message.startswith("faq.csv:1: unknown column(s)")
    assert "missing required column(s) 'question', 'answer'" in message
    assert "header" in message


def test_csv_header_after_blank_lines_and_repeated_columns() -> None:
    assert error("\n\nquestion,answer,answer\n", "csv").startswith("faq:3: column(s) 'answer'")


def test_csv_wrong_number_of_fields() -> None:
    message = error("question,answer\nQ?,A.\nQ2?,yes, we do\n", "csv")
    assert message.startswith("faq:3: 3 fields but the header has 2 columns")


def test_csv_unterminated_quote_names_the_record_start() -> None:
    message = error('question,answer\nQ?,A.\nQ2?,"never closed\nand on\n', "csv")
    assert message.startswith("faq:3: invalid CSV")


def test_csv_invalid_id_names_the_line() -> None:
    message = error("id,question,answer\nok,Q?,A.\nnot ok,Q2?,A2.\n", "csv")
    assert message.startswith("faq:3: field 'id' must be")


def test_csv_only_header_has_no_entries() -> None:
    assert error("question,answer\n", "csv") == "faq: no FAQ entries found"


# --- md -------------------------------------------------------------------------------------


def test_md_reads_hand_written_sections() -> None:
    text = (
        "# Pinecone FAQ\n"
        "Intro text that is ignored.\n"
        "\n"
        "## How do I pay?\n"
        "By card or invoice.\n"
        "\n"
        "### Invoice\n"
        "Within 14 days.\n"
        "##   Wann liefern Sie?  \n"
        "id: liefern\n"
        "language: de\n"
        "alt: Lieferzeit |Versanddauer\n"
        "tags: versand\n"
        "\n"
        "\n"
        "In 2 Tagen.\n"
        "\n"
    )
    pay, liefern = parse_entries(text, "md", "x")
    assert pay == FaqEntry(
        id=slug_id("How do I pay?"),
        question="How do I pay?",
        answer="By card or invoice.\n\n### Invoice\nWithin 14 days.",
    )
    assert liefern == FaqEntry(
        id="liefern",
        question="Wann liefern Sie?",
        answer="In 2 Tagen.",
        alt_questions=("Lieferzeit", "Versanddauer"),
        tags=("versand",),
        language="de",
    )


def test_md_metadata_only_directly_under_the_heading() -> None:
    [entry] = parse_entries("## Q?\nid: q\nAnswer.\ntags: late\n", "md", "x")
    assert entry.id == "q"
    assert entry.tags == ()
    assert entry.answer == "Answer.\ntags: late"
    [entry] = parse_entries("## Q?\n\nid: not-metadata\n", "md", "x")
    assert entry.id == slug_id("Q?")
    assert entry.answer == "id: not-metadata"


def test_md_empty_answer_names_the_heading_line() -> None:
    text = "# FAQ\n\n## Q one?\nA.\n\n## Q two?\nid: two\n\n\n## Q three?\nA3.\n"
    assert error(text, "md", "faq.md").startswith("faq.md:6: field 'answer' is empty")


def test_md_other_errors_name_the_line() -> None:
    assert error("## Q?\nid: a\nid: b\n\nA.\n", "md").startswith("faq:3: metadata 'id:'")
    assert error("## Q?\nA.\n##\nA2.\n", "md").startswith("faq:3: field 'question' must not")
    assert error("# Title\n\n## Q?\nid: bad id\n\nA.\n", "md").startswith("faq:3: field 'id'")
    assert error("# Title only\n\n### Not level two\nText.\n", "md") == "faq: no FAQ entries found"


# --- what a format cannot represent ---------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "md"])
@pytest.mark.parametrize(
    "entry",
    [
        FaqEntry(id="a", question="Q?", answer="A.", alt_questions=("this | that",)),
        FaqEntry(id="a", question="Q?", answer="A.", tags=("a|b",)),
    ],
)
def test_a_pipe_inside_a_list_item_is_refused(fmt: str, entry: FaqEntry) -> None:
    with pytest.raises(KnowledgeError, match=f"contains '\\|'.*{fmt} format"):
        format_entries([entry], fmt)
    assert parse_entries(format_entries([entry], "jsonl"), "jsonl", "x") == [entry]


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        (FaqEntry(id="a", question="Two\nlines?", answer="A."), "question"),
        (FaqEntry(id="a", question="Q?", answer="A.", alt_questions=("x\ny",)), "alt_questions"),
        (FaqEntry(id="a", question="Q?", answer="A\r\nB"), "answer"),
        (FaqEntry(id="a", question="Q?", answer="A.\n## Heading\nB."), "answer"),
        (FaqEntry(id="a", question="Q?", answer="A.\n##\nB."), "answer"),
    ],
)
def test_md_refuses_what_it_cannot_hold(entry: FaqEntry, field: str) -> None:
    with pytest.raises(KnowledgeError, match=f"field '{field}'"):
        format_entries([entry], "md")
    assert parse_entries(format_entries([entry], "csv"), "csv", "x") == [entry]


@pytest.mark.parametrize("fmt", ["csv", "md"])
def test_an_empty_answer_is_refused_where_it_cannot_be_read_back(fmt: str) -> None:
    entry = FaqEntry(id="a", question="Q?", answer="")
    with pytest.raises(KnowledgeError, match="empty answer"):
        format_entries([entry], fmt)
    assert parse_entries(format_entries([entry], "jsonl"), "jsonl", "x") == [entry]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("entries", "match"),
    [
        ([], "No FAQ entries to write"),
        ([TRICKY[0], TRICKY[0]], "used twice"),
        ([FaqEntry(id="a", question=" Q? ", answer="A.")], "untrimmed"),
        ([FaqEntry(id="a", question="Q?", answer="A.", language=" de")], "untrimmed"),
    ],
)
def test_entries_that_would_not_read_back_are_refused(
    fmt: str, entries: list[FaqEntry], match: str
) -> None:
    with pytest.raises(KnowledgeError, match=match):
        format_entries(entries, fmt)
