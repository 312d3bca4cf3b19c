"""`answerdesk kb …`: the operator's knowledge-base commands (the same operations as /admin/kb)."""

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

import click
from redis.asyncio import Redis

from adapters.operators import CLI
from adapters.redis_server import in_redis, open_redis
from adapters.settings import Settings, load_settings
from bot import (
    ConversationError,
    FeedbackLog,
    SessionKeys,
    SessionStore,
    Topic,
    UnansweredItem,
    UnansweredTopics,
)
from engine import as_batch_job
from knowledge import (
    FORMATS,
    Calibration,
    EntryRecord,
    FaqEntry,
    KnowledgeError,
    KnowledgeKeys,
    KnowledgeStore,
    Retriever,
    SearchIndex,
    read_entries,
    write_entries,
)
from knowledge.calibration import calibrate
from knowledge.evaluation import evaluate, hold_out, read_queries
from knowledge.formats import slug_id
from knowledge.retriever import TextEmbedder
from knowledge.tuning import TuningPlan

T = TypeVar("T")


@dataclass
class Kb:
    store: KnowledgeStore
    retriever: Retriever | None
    redis: Redis


def run(settings: Settings, work: Callable[[Kb], Awaitable[T]], search: bool = False) -> T:
    """Run `work` against the configured knowledge base; KnowledgeErrors become clean errors."""

    async def go() -> T:
        async with open_kb(settings, search) as kb:
            return await work(kb)

    try:
        return asyncio.run(go())
    except KnowledgeError as exc:
        raise click.ClickException(str(exc)) from exc


@asynccontextmanager
async def open_kb(settings: Settings, search: bool) -> AsyncIterator[Kb]:
    async with open_redis(settings.redis_url, settings.data_dir) as redis:
        keys = KnowledgeKeys(settings.redis_prefix)
        store = KnowledgeStore(redis, keys)
        retriever = None
        if search:
            from adapters.runtime import build_embedder

            embedder = await asyncio.to_thread(build_embedder, settings, redis)
            retriever = Retriever(store, embedder)
        yield Kb(store, retriever, redis)


async def index_of(embedder: TextEmbedder, entries: list[FaqEntry]) -> SearchIndex:
    """A search index of `entries` alone (not the stored knowledge base)."""
    vectors = await embedder.embed([t for e in entries for t in SearchIndex.texts_of(e)])
    return SearchIndex.build(entries, vectors)


def show(record: EntryRecord) -> str:
    data: dict[str, Any] = {"version": record.version, "updated": record.updated, "by": record.by}
    data.update(record.entry.to_dict() if record.entry else {"id": record.id, "deleted": True})
    return json.dumps(data, ensure_ascii=False, indent=2)


format_option = click.option(
    "--format", "fmt", type=click.Choice(FORMATS), help="Default: from the file name."
)


@click.group()
def kb() -> None:
    """Manage the FAQ knowledge base (running servers pick up every change at once)."""


@kb.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@format_option
@click.option("--replace", is_flag=True, help="Also remove the entries the file does not have.")
@click.option("--dry-run", is_flag=True, help="Say what would change; change nothing.")
def kb_import(file: Path, fmt: str | None, replace: bool, dry_run: bool) -> None:
    """Add and update the entries of FILE (JSONL, CSV or Markdown) in one step.

    An invalid line changes nothing; the error names the line and the field. After a real import
    the answer thresholds are calibrated again.
    """
    try:
        entries = read_entries(file, fmt)
    except KnowledgeError as exc:
        raise click.ClickException(str(exc)) from exc

    async def work(kb: Kb) -> None:
        mode: Literal["merge", "replace"] = "replace" if replace else "merge"
        if kb.retriever and not dry_run:
            await kb.retriever.prepare(entries)  # running servers then find the vectors cached
        result = await kb.store.import_entries(entries, mode, dry_run=dry_run, by=CLI)
        verb = "would change" if dry_run else "imported"
        click.echo(
            f"{verb} {file}: {result.added} added, {result.updated} updated, "
            f"{result.unchanged} unchanged, {result.removed} removed "
            f"(knowledge base version {result.version})"
        )
        if kb.retriever and not dry_run and (result.added or result.updated or result.removed):
            echo_calibration(await kb.retriever.calibrate())

    with as_batch_job():  # embedding a large file: a server on this machine answers first
        run(load_settings(), work, search=not dry_run)


@kb.command("export")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@format_option
def kb_export(file: Path, fmt: str | None) -> None:
    """Write every entry to FILE (JSONL, CSV or Markdown)."""

    async def work(kb: Kb) -> int:
        entries = await kb.store.entries()
        write_entries(file, entries, fmt)
        return len(entries)

    click.echo(f"exported {run(load_settings(), work)} entries to {file}")


@kb.command("list")
def kb_list() -> None:
    """Every entry: id, version, question."""

    async def work(kb: Kb) -> list[EntryRecord]:
        return await kb.store.records()

    for record in run(load_settings(), work):
        assert record.entry is not None
        click.echo(f"{record.id}\tv{record.version}\t{record.entry.question}")


@kb.command("show")
@click.argument("entry_id")
def kb_show(entry_id: str) -> None:
    """One entry, as JSON."""
    click.echo(show(run(load_settings(), lambda kb: kb.store.get(entry_id))))


def entry_options(required: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def wrap(command: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(
            [
                click.option("--question", required=required, help="The question, as asked."),
                click.option("--answer", required=required, help="The answer customers get."),
                click.option("--alt", "alts", multiple=True, help="Another phrasing (repeat)."),
                click.option("--tag", "tags", multiple=True, help="A tag (repeat)."),
                click.option("--language", help="Language code, e.g. en."),
            ]
        ):
            command = option(command)
        return command

    return wrap


@kb.command("add")
@entry_options(required=True)
@click.option("--id", "entry_id", help="Default: made from the question.")
def kb_add(
    question: str,
    answer: str,
    alts: tuple[str, ...],
    tags: tuple[str, ...],
    language: str | None,
    entry_id: str | None,
) -> None:
    """Add an entry."""
    data: dict[str, Any] = {"id": entry_id or slug_id(question), "question": question}
    data["answer"] = answer
    data |= {"alt_questions": list(alts), "tags": list(tags), "language": language or "en"}
    entry = checked(data)
    click.echo(show(run(load_settings(), lambda kb: kb.store.create(entry, by=CLI))))


@kb.command("edit")
@click.argument("entry_id")
@entry_options(required=False)
def kb_edit(
    entry_id: str,
    question: str | None,
    answer: str | None,
    alts: tuple[str, ...],
    tags: tuple[str, ...],
    language: str | None,
) -> None:
    """Change an entry: the options given replace those fields (--alt and --tag replace all)."""

    async def work(kb: Kb) -> EntryRecord:
        current = (await kb.store.get(entry_id)).entry
        assert current is not None
        data = current.to_dict()
        given = {"question": question, "answer": answer, "language": language}
        data |= {k: v for k, v in given.items() if v is not None}
        if alts:
            data["alt_questions"] = list(alts)
        if tags:
            data["tags"] = list(tags)
        return await kb.store.update(checked(data), by=CLI)

    click.echo(show(run(load_settings(), work)))


@kb.command("rm")
@click.argument("entry_id")
def kb_rm(entry_id: str) -> None:
    """Remove an entry (`kb revert` brings it back)."""
    record = run(load_settings(), lambda kb: kb.store.delete(entry_id, by=CLI))
    click.echo(f"removed {entry_id} (version {record.version})")


@kb.command("history")
@click.argument("entry_id")
def kb_history(entry_id: str) -> None:
    """Every version of an entry, oldest first: when (ANSWERDESK_TIME_ZONE), by whom, and its
    question."""
    settings = load_settings()
    for record in run(settings, lambda kb: kb.store.history(entry_id)):
        what = "deleted" if record.entry is None else record.entry.question
        when = datetime.fromtimestamp(record.updated, settings.zone)
        click.echo(f"v{record.version}\t{when:%Y-%m-%d %H:%M}\t{record.by or '-'}\t{what}")


@kb.command("revert")
@click.argument("entry_id")
@click.argument("version", type=int)
def kb_revert(entry_id: str, version: int) -> None:
    """Make VERSION of an entry current again (as a new version)."""
    click.echo(show(run(load_settings(), lambda kb: kb.store.revert(entry_id, version, by=CLI))))


@kb.command("search")
@click.argument("question")
@click.option("-k", "count", default=5, show_default=True, help="How many hits.")
def kb_search(question: str, count: int) -> None:
    """The entries the assistant would find for QUESTION, with their scores."""

    async def work(kb: Kb) -> None:
        assert kb.retriever is not None
        hits = await kb.retriever.search(question, count)
        t = kb.retriever.thresholds
        click.echo(
            f"thresholds: answer {t.answer:.3f}, verbatim {t.faq:.3f}, suggest {t.suggest:.3f}"
        )
        for hit in hits:
            parts = " ".join(f"{k}={v:.3f}" for k, v in hit.scores.items())
            click.echo(f"{hit.score:.3f}\t{hit.entry.id}\t{hit.entry.question}\t({parts})")

    run(load_settings(), work, search=True)


@kb.command("calibrate")
def kb_calibrate() -> None:
    """Choose the answer thresholds from the knowledge base itself (no labelled data needed)."""

    async def work(kb: Kb) -> None:
        assert kb.retriever is not None
        echo_calibration(await kb.retriever.calibrate())

    run(load_settings(), work, search=True)


@kb.command("eval")
@click.option("--kb", "kb_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--queries", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--hold-out",
    "hold_out_share",
    default=0.0,
    show_default=True,
    help="Leave this share of entries out of the KB; their queries must then be declined.",
)
@click.option("--seed", default=0, show_default=True, help="Which entries --hold-out leaves out.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def kb_eval(
    kb_file: Path | None, queries: Path | None, hold_out_share: float, seed: int, as_json: bool
) -> None:
    """Retrieval quality on labelled queries: hit@1, hit@5, MRR, answered and declined shares.

    The knowledge base is read from --kb (the stored one is not touched) and calibrated on its
    own, as `kb calibrate` would; the queries are never used to choose anything.
    """
    if kb_file is None or queries is None:
        raise click.UsageError("--kb and --queries are required")
    try:
        entries = read_entries(kb_file)
        labelled = read_queries(queries)
        entries, labelled = hold_out(entries, labelled, hold_out_share, seed)
    except KnowledgeError as exc:
        raise click.ClickException(str(exc)) from exc

    async def work(kb: Kb) -> dict[str, Any]:
        assert kb.retriever is not None
        embedder = kb.retriever.embedder
        index = await index_of(embedder, entries)
        thresholds = await asyncio.to_thread(calibrate, index, 0, shift=embedder.threshold_shift)
        result = await evaluate(
            index, labelled, embedder.embed_query, thresholds.answer, thresholds.suggest
        )
        return {"kb": str(kb_file), "entries": len(entries), "hold_out": hold_out_share, **result}

    result = run(load_settings(), work, search=True)
    if as_json:
        click.echo(json.dumps(result))
    else:
        for key, value in result.items():
            click.echo(f"{key}\t{value}")


@kb.command("tune")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option(
    "--kb",
    "kb_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Tune on this FAQ file instead of the stored knowledge base.",
)
@click.option(
    "--base",
    default=None,
    help="The sentence-transformers model to start from. Default: the bundled all-MiniLM-L6-v2.",
)
@click.option("--epochs", default=TuningPlan.epochs, show_default=True, type=float)
@click.option("--min-steps", default=TuningPlan.min_steps, show_default=True)
@click.option("--max-steps", default=TuningPlan.max_steps, show_default=True)
@click.option("--batch-size", default=TuningPlan.batch_size, show_default=True)
@click.option("--lr", default=TuningPlan.learning_rate, show_default=True)
@click.option("--seed", default=TuningPlan.seed, show_default=True)
def kb_tune(
    out: Path,
    kb_file: Path | None,
    base: str | None,
    epochs: float,
    min_steps: int,
    max_steps: int,
    batch_size: int,
    lr: float,
    seed: int,
) -> None:
    """Fine-tune the embedder on the FAQ's own questions, phrasings and answers; save it to --out.

    Customers' wordings are then matched to the right entry more often. Point every server at
    the result with ANSWERDESK_EMBEDDER=OUT and restart them: the FAQ is embedded again once and
    the answer thresholds are chosen again for the new embedder. Tune again after large FAQ changes.
    """
    if batch_size < 2 or min_steps < 1 or max_steps < min_steps or epochs <= 0 or lr <= 0:
        raise click.UsageError(
            "--batch-size must be at least 2, --epochs and --lr above 0, and "
            "1 <= --min-steps <= --max-steps"
        )
    plan = TuningPlan(epochs, min_steps, max_steps, batch_size, lr, seed)
    try:
        if kb_file is not None:
            entries = read_entries(kb_file)
        else:
            entries = run(load_settings(), lambda kb: kb.store.entries())
        from knowledge.tuner import tune_embedder

        with as_batch_job():  # a server on this machine answers customers first
            report = tune_embedder(entries, base, out, plan)
    except KnowledgeError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"tuned {report.base} on {report.pairs} pairs from {report.entries} entries: "
        f"{report.steps} steps in {report.seconds:.0f} s, loss {report.first_loss:.3f} -> "
        f"{report.last_loss:.3f}; thresholds shifted by {report.threshold_shift or 'nothing'}\n"
        f"saved to {out}; to use it, set ANSWERDESK_EMBEDDER={out.resolve()} for every server "
        "and restart them"
    )


@kb.command("unanswered")
@click.option("--count", default=100, show_default=True, help="How many to list, oldest first.")
@click.option(
    "--topics",
    is_flag=True,
    help="By topic: questions asked in other words about one thing together, the most asked "
    "first (as the operator desk lists them).",
)
def kb_unanswered(count: int, topics: bool) -> None:
    """List questions the assistant could not answer and replies customers rated 👎."""
    settings = load_settings()
    if topics:

        def work(kb: Kb) -> Awaitable[list[Topic]]:
            assert kb.retriever is not None
            return UnansweredTopics(feedback_log(kb.redis, settings), kb.retriever).topics(count)

        found = run(settings, work, search=True)
        for topic in found:
            asked = len(topic.items)
            click.echo(f"asked {asked} time{'s' if asked > 1 else ''}: {topic.items[0].question}")
            for item in topic.items:
                click.echo(f"  {listed(item)}")
        items = [item for topic in found for item in topic.items]
    else:
        items = in_redis(settings, lambda redis: feedback_log(redis, settings).unanswered(count))
        for item in items:
            click.echo(listed(item))
    if not items:
        click.echo("nothing unanswered")


def listed(item: UnansweredItem) -> str:
    """One line of `kb unanswered`: id, reason, session, question, the entries it was offered."""
    offered = f"\tsuggested: {', '.join(item.suggested)}" if item.suggested else ""
    return f"{item.id}\t{item.reason}\t{item.session_id}\t{item.question}{offered}"


@kb.command("dismiss")
@click.argument("item_id")
def kb_dismiss(item_id: str) -> None:
    """Drop unanswered question ITEM_ID (from `kb unanswered`) without answering it."""
    settings = load_settings()
    try:
        in_redis(settings, lambda redis: feedback_log(redis, settings).dismiss(item_id))
    except ConversationError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"dismissed {item_id}")


@kb.command("alias")
@click.argument("item_id")
@click.argument("entry_id")
def kb_alias(item_id: str, entry_id: str) -> None:
    """Add unanswered question ITEM_ID (from `kb unanswered`) to FAQ entry ENTRY_ID's phrasings."""
    if not re.fullmatch(r"\d{1,19}-\d{1,19}", item_id):
        raise click.UsageError(
            f"{item_id!r} is not an unanswered question's id (like 1765000000000-0): see "
            "`answerdesk kb unanswered`."
        )
    settings = load_settings()

    def work(redis: Redis) -> Awaitable[FaqEntry]:
        store = KnowledgeStore(redis, KnowledgeKeys(settings.redis_prefix))
        return feedback_log(redis, settings).alias(item_id, entry_id, store, by=CLI)

    try:
        entry = in_redis(settings, work)
    except (KnowledgeError, ConversationError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{entry.id}: {len(entry.alt_questions)} alternative questions")


def feedback_log(redis: Redis, settings: Settings) -> FeedbackLog:
    """The unanswered queue in the configured Redis."""
    return FeedbackLog(SessionStore(redis, SessionKeys(settings.redis_prefix)))


def checked(data: dict[str, Any]) -> FaqEntry:
    try:
        return FaqEntry.from_dict(data, where="entry")
    except KnowledgeError as exc:
        raise click.ClickException(str(exc)) from exc


def echo_calibration(result: Calibration) -> None:
    click.echo(
        f"thresholds: answer at {result.answer:.3f}, verbatim FAQ answer at {result.faq:.3f}, "
        f"suggestions from {result.suggest or 0:.3f} ({result.probes} left-out questions: "
        f"{result.in_scope_accept:.0%} still answered right, {result.oos_reject:.0%} of "
        "uncovered ones declined)"
    )
