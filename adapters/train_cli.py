"""`answerdesk train …` and `answerdesk eval answers`: fine-tuning adapters, measuring replies."""

import asyncio
import json
import os
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import click

from adapters.kb_cli import index_of
from adapters.redis_server import open_redis
from adapters.settings import Settings, load_settings
from bot.answer_eval import Scored, answer_cases, summarize
from bot.grounded_chats import GroundedCase, Search, grounded_case, training_chats
from engine import EngineError, GenerationParams, as_batch_job
from knowledge import FaqEntry, Hit, KnowledgeError, read_entries
from knowledge.evaluation import read_queries
from knowledge.retriever import TextEmbedder

QUANTS = click.Choice(["none", "int8", "nf4"])
existing_file = click.Path(exists=True, dir_okay=False, path_type=Path)


@asynccontextmanager
async def open_embedder(settings: Settings) -> AsyncIterator[TextEmbedder]:
    """The configured embedder, its cache in the configured Redis."""
    from adapters.runtime import build_embedder

    async with open_redis(settings.redis_url, settings.data_dir) as redis:
        yield await asyncio.to_thread(build_embedder, settings, redis)


async def search_over(embedder: TextEmbedder, entries: list[FaqEntry]) -> Search:
    """Retrieval over `entries` alone (the stored knowledge base is not touched)."""
    index = await index_of(embedder, entries)

    async def search(question: str, k: int) -> list[Hit]:
        return index.search(await embedder.embed_query(question), question, k=k)

    return search


@click.group(invoke_without_command=True)
@click.option("--data", type=existing_file, help="Training chats: JSONL of {'messages': [...]}.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Adapter folder.")
@click.option("--base", help="Base model: GGUF file, HF folder or hub id (default: bundled).")
@click.option("--quant", type=QUANTS, default="none", show_default=True, help="nf4: QLoRA.")
@click.option("--rank", default=8, show_default=True)
@click.option("--alpha", type=int, help="LoRA alpha (default: twice the rank).")
@click.option("--targets", help="Comma-separated module names (default: every projection).")
@click.option("--layers", type=int, help="Adapt only the top N layers (default: all).")
@click.option("--epochs", default=1.0, show_default=True)
@click.option("--steps", type=int, help="Optimizer steps (overrides --epochs).")
@click.option("--lr", default=2e-4, show_default=True)
@click.option("--batch-size", default=8, show_default=True)
@click.option("--max-tokens", default=1024, show_default=True, help="Longer chats are left out.")
@click.option(
    "--eval-data",
    type=existing_file,
    help="Chats for eval loss (default: 5%, at most 40, held out).",
)
@click.option("--save-every", default=50, show_default=True, help="Steps between checkpoints.")
@click.option("--resume", is_flag=True, help="Continue from the last checkpoint in --out.")
@click.option("--seed", default=0, show_default=True)
@click.option("--data-note", default="", help="What the data is and its licence (model card).")
@click.pass_context
def train(ctx: click.Context, data: Path | None, out: Path | None, **options: Any) -> None:
    """Fine-tune a LoRA adapter (QLoRA with --quant nf4|int8) on chats, loss on the replies.

    Prints the metrics as JSON; the folder gets the adapter, MODEL_CARD.md and metrics.json.
    Ctrl-C saves what is trained so far; --resume continues.
    """
    if ctx.invoked_subcommand is not None:
        return
    if data is None or out is None:
        raise click.UsageError("--data and --out are required")
    from engine.training import DEFAULT_TARGETS, TrainConfig, read_chats
    from engine.training import train as run_training

    settings = load_settings()
    rank = options.pop("rank")
    alpha = options.pop("alpha") or 2 * rank
    targets = options.pop("targets")
    eval_data = options.pop("eval_data")
    config = TrainConfig(
        out=out,
        rank=rank,
        alpha=alpha,
        targets=tuple(t.strip() for t in targets.split(",")) if targets else DEFAULT_TARGETS,
        threads=settings.threads,
        **options,
    )
    try:
        chats = read_chats(data)
        if eval_data is not None:
            eval_chats = read_chats(eval_data)
        else:  # hold out 5% (at least one chat, when there are two or more)
            random.Random(config.seed).shuffle(chats)
            held = min(40, max(1, len(chats) // 20)) if len(chats) > 1 else 0
            eval_chats, chats = chats[:held], chats[held:]
        with as_batch_job():  # a server on this machine answers customers first
            result = run_training(config, chats, eval_chats, settings.models_dir)
    except EngineError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(result.metrics()))
    if result.interrupted:
        click.echo(f"Interrupted: saved in {out}; run again with --resume to continue.", err=True)


@train.command("make-data")
@click.option("--kb", "kb_files", type=existing_file, multiple=True, required=True)
@click.option("--business", "businesses", multiple=True, help="Each --kb's business name.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--k", default=3, show_default=True, help="FAQ entries in each context.")
@click.option("--refusal-share", default=0.3, show_default=True)
@click.option("--seed", default=0, show_default=True)
def make_data(
    kb_files: tuple[Path, ...],
    businesses: tuple[str, ...],
    out: Path,
    k: int,
    refusal_share: float,
    seed: int,
) -> None:
    """Grounded-answer training chats from FAQ files, in the prompt format the assistant uses.

    Every question and alt_question becomes one chat; its context is what retrieval finds for it
    in the same FAQ file. A share (--refusal-share) leave the right entry out and teach the
    refusal sentence instead.
    """
    if businesses and len(businesses) not in (1, len(kb_files)):
        raise click.UsageError("give one --business, or one per --kb")
    if not 0 <= refusal_share <= 1:
        raise click.UsageError("--refusal-share must be between 0 and 1")
    settings = load_settings()
    names = businesses * len(kb_files) if len(businesses) == 1 else businesses

    async def work() -> list[dict[str, object]]:
        chats: list[dict[str, object]] = []
        async with open_embedder(settings) as embedder:
            for n, path in enumerate(kb_files):
                entries = read_entries(path)
                business = names[n] if names else settings.business_name
                search = await search_over(embedder, entries)
                chats += await training_chats(entries, search, business, k, refusal_share, seed)
        return chats

    try:
        chats = asyncio.run(work())
    except KnowledgeError as exc:
        raise click.ClickException(str(exc)) from exc
    random.Random(seed).shuffle(chats)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}")
    tmp.write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in chats), "utf-8")
    tmp.replace(out)
    refusals = sum(not c["meta"]["answerable"] for c in chats)  # type: ignore[index]
    click.echo(f"{len(chats)} chats ({refusals} teach the refusal) written to {out}")


@click.group("eval")
def evaluation() -> None:
    """Measure the assistant on labelled questions."""


@evaluation.command("answers")
@click.option("--kb", "kb_file", type=existing_file, required=True)
@click.option("--queries", type=existing_file, required=True)
@click.option("--adapter", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--no-adapter", is_flag=True, help="The base model alone.")
@click.option("--quant", type=QUANTS, help="Default: ANSWERDESK_QUANTIZATION.")
@click.option(
    "--dtype", type=click.Choice(["auto", "float32", "bfloat16"]), help="ANSWERDESK_DTYPE."
)
@click.option("--limit", default=100, show_default=True, help="Questions sampled (0: all).")
@click.option("--business", default="our organisation", show_default=True)
@click.option("--k", default=3, show_default=True, help="FAQ entries in each context.")
@click.option("--seed", default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--replies", type=click.Path(dir_okay=False, path_type=Path), help="Write every reply here."
)
def eval_answers(
    kb_file: Path,
    queries: Path,
    adapter: Path | None,
    no_adapter: bool,
    quant: str | None,
    dtype: str | None,
    limit: int,
    business: str,
    k: int,
    seed: int,
    as_json: bool,
    replies: Path | None,
) -> None:
    """Reply quality: token F1 against the gold answer, invented facts, refusals.

    Each sampled question is asked with its gold entry in the context and again without it.
    """
    from adapters.runtime import build_model, local_adapters
    from engine.loading import fast_dtype

    if adapter is not None and no_adapter:
        raise click.UsageError("give --adapter or --no-adapter, not both")
    settings = load_settings()
    update: dict[str, Any] = {"model_url": None, "model_max_batch": 8, "model_max_waiting": 8}
    if quant:
        update["quantization"] = quant
    if dtype:
        update["dtype"] = dtype
    if no_adapter:
        update["adapter"] = "base"
    elif adapter is not None:
        update |= {"adapters": {"candidate": adapter}, "adapter": "candidate"}
    settings = settings.model_copy(update=update)
    try:
        entries = read_entries(kb_file)
        labelled = read_queries(queries)
    except KnowledgeError as exc:
        raise click.ClickException(str(exc)) from exc
    by_id = {e.id: e for e in entries}
    usable = [q for q in labelled if all(i in by_id and by_id[i].answer for i in q.relevant)]
    if limit and len(usable) > limit:
        usable = random.Random(seed).sample(usable, limit)
    params = GenerationParams(max_new_tokens=settings.max_new_tokens)

    async def work() -> list[Scored]:
        cases: list[GroundedCase] = []
        async with open_embedder(settings) as embedder:
            search = await search_over(embedder, entries)
            for q in usable:
                gold = [by_id[i] for i in sorted(q.relevant)]
                for answerable in (True, False) if gold else (False,):
                    cases.append(await grounded_case(q.text, gold, search, k, answerable))
        model = await asyncio.to_thread(build_model, settings)
        try:
            scored = await answer_cases(cases, model, params, business, progress=not as_json)
        finally:
            await model.close()
        return scored

    try:
        scored = asyncio.run(work())
    except (EngineError, KnowledgeError) as exc:
        raise click.ClickException(str(exc)) from exc
    if replies is not None:
        lines = [
            {
                "question": s.case.question,
                "answerable": s.case.answerable,
                "reply": s.reply,
                "gold": s.case.gold[0].answer if s.case.gold else None,
                "f1": s.f1,
                "refused": s.refused,
                "invented": sorted(s.invented),
            }
            for s in scored
        ]
        replies.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    result: dict[str, Any] = summarize(scored)
    adapters, default = local_adapters(settings)
    result |= {
        "kb": str(kb_file),
        "adapter": str(adapters[default]) if default in adapters else "none",
        "quant": settings.quantization,
        "dtype": fast_dtype(settings.dtype),
    }
    if as_json:
        click.echo(json.dumps(result))
    else:
        for key, value in result.items():
            click.echo(f"{key}\t{value}")
