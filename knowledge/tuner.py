"""The embedder's fine-tuning (see `knowledge.tuning`), run by sentence-transformers' trainer."""

import json
import random
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
from sentence_transformers.base.sampler import DefaultBatchSampler
from sentence_transformers.sentence_transformer.losses import (
    MultipleNegativesSymmetricRankingLoss,
)

from knowledge.calibration import calibrate, thresholds
from knowledge.embedder import BUNDLED_EMBEDDER, load_sentence_model, unit_vectors
from knowledge.entry import FaqEntry
from knowledge.errors import KnowledgeError
from knowledge.index import SearchIndex
from knowledge.tuning import TUNING_FILE, TuningPlan, TuningReport, training_pairs


def tune_embedder(
    entries: list[FaqEntry], base: str | None, out: Path, plan: TuningPlan | None = None
) -> TuningReport:
    """Fine-tune the sentence-transformers model at `base` (None: the bundled one) on `entries`;
    save it to `out`, with how much its thresholds must shift (see `threshold_shift`).

    `out` is replaced only once the new model is completely written.
    """
    plan = plan or TuningPlan()
    started = time.perf_counter()
    model, pairs, losses = _train(entries, base, plan)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        model.save(str(staging))
        del model
        shift = threshold_shift(entries, base, plan)
        report = TuningReport(
            base=BUNDLED_EMBEDDER if base is None else base,
            entries=len(entries),
            pairs=pairs,
            steps=plan.steps(pairs),
            seconds=round(time.perf_counter() - started, 1),
            first_loss=round(float(losses[0]), 4),
            last_loss=round(float(losses[-1]), 4),
            threshold_shift=shift,
        )
        (staging / TUNING_FILE).write_text(json.dumps(asdict(report), indent=2) + "\n")
        for path in [staging, *staging.rglob("*")]:  # readable by a server of another user
            path.chmod(0o755 if path.is_dir() else 0o644)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _replace_dir(staging, out)
    return report


def threshold_shift(
    entries: list[FaqEntry], base: str | None, plan: TuningPlan
) -> dict[str, float]:
    """How much higher a tuned embedder's thresholds must be than `calibrate` finds.

    Calibration asks each phrasing with its own entry left out: the score of the closest other
    entry stands in for a question the FAQ does not cover. After tuning, that score is flattered:
    training pushed exactly those phrasings away from the other entries, which a real uncovered
    question never was. So a second model is tuned the same way without a quarter of the entries;
    their phrasings, which it never saw, are asked against the rest, and the thresholds from
    those scores minus the ones `calibrate` finds for its own training entries is the shift
    (never below 0).
    """
    unseen = set(random.Random(plan.seed).sample([e.id for e in entries], len(entries) // 4))
    seen = [e for e in entries if e.id not in unseen]
    if len(unseen) < 2 or len(seen) < 2:
        return {}  # too small a FAQ to measure it
    try:
        model = _train(seen, base, plan)[0]
    except KnowledgeError:  # too few of the rest have two texts to train on
        return {}
    texts = [t for e in seen for t in SearchIndex.texts_of(e)]
    index = SearchIndex.build(seen, unit_vectors(model, texts))
    flattered = calibrate(index, 0)
    probes = [t for e in entries if e.id in unseen for t in e.texts]
    outside = [
        hits[0].score
        for text, vector in zip(probes, unit_vectors(model, probes), strict=True)
        if (hits := index.search(vector, text, k=1))
    ]
    answer, faq = thresholds(outside)
    # Never lower: tuning can only flatter the probes, and a small FAQ's few unseen phrasings
    # measure the shift roughly (a 98th percentile of 16 scores is nearly their maximum).
    return {
        "answer": round(max(0.0, answer - flattered.answer), 4),
        "faq": round(max(0.0, faq - flattered.faq), 4),
    }


def _train(
    entries: list[FaqEntry], base: str | None, plan: TuningPlan
) -> tuple[Any, int, list[float]]:
    """The model at `base` tuned on `entries`, how many pairs it saw and its logged losses."""
    from datasets import Dataset

    pairs = training_pairs(entries, seed=plan.seed)
    if len({entry_id for entry_id, _, _ in pairs}) < 2:
        raise KnowledgeError(
            "Tuning needs at least 2 FAQ entries with two texts each (a question and an answer, "
            "or alternative phrasings)."
        )
    model = load_sentence_model(base)
    steps = plan.steps(len(pairs))
    groups = [entry_id for entry_id, _, _ in pairs]
    data = Dataset.from_dict(
        {"anchor": [a for _, a, _ in pairs], "positive": [b for *_, b in pairs]}
    )
    with tempfile.TemporaryDirectory(prefix="answerdesk-tune-") as scratch:
        args = SentenceTransformerTrainingArguments(
            output_dir=scratch,
            max_steps=steps,
            per_device_train_batch_size=plan.batch_size,
            learning_rate=plan.learning_rate,
            warmup_steps=max(1, steps // 10),
            seed=plan.seed,
            use_cpu=True,
            save_strategy="no",
            report_to="none",
            logging_steps=max(1, steps // 10),
            batch_sampler=lambda dataset, **kw: DistinctEntryBatches(dataset, groups=groups, **kw),
        )
        trainer = SentenceTransformerTrainer(
            model=model,
            args=args,
            train_dataset=data,
            loss=MultipleNegativesSymmetricRankingLoss(model),
        )
        trainer.train()
    losses = [float(r["loss"]) for r in trainer.state.log_history if "loss" in r]
    model.eval()
    return model, len(pairs), losses


def _replace_dir(new: Path, target: Path) -> None:
    """Put the directory `new` at `target`, replacing what was there only after `new` is whole."""
    if target.exists() and not target.is_dir():
        shutil.rmtree(new, ignore_errors=True)
        raise KnowledgeError(f"{target} exists and is not a directory: choose another --out.")
    old = target.with_name(f".{target.name}-old")
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
    new.rename(target)
    shutil.rmtree(old, ignore_errors=True)


class DistinctEntryBatches(DefaultBatchSampler):
    """Batches of pairs from distinct entries. Entries are drawn in proportion to the pairs they
    have left, so that every batch stays full until the epoch's last few."""

    def __init__(self, dataset: Any, *, groups: list[str], **kwargs: Any) -> None:
        super().__init__(dataset, **kwargs)
        self._groups = groups

    def _epoch(self) -> list[list[int]]:
        rng = np.random.default_rng(self.seed + self.epoch)
        members: dict[str, list[int]] = {}
        for row, group in enumerate(self._groups):
            members.setdefault(group, []).append(row)
        queues = [list(rng.permutation(rows)) for rows in members.values()]
        batches: list[list[int]] = []
        while True:
            left = np.array([len(q) for q in queues], dtype=np.float64)
            active = np.flatnonzero(left)
            if len(active) < 2:  # one entry alone has nothing to be told apart from
                return batches
            size = min(self.batch_size, len(active))
            chosen = rng.choice(active, size, replace=False, p=left[active] / left[active].sum())
            batches.append([int(queues[g].pop()) for g in chosen])

    def __iter__(self) -> Iterator[list[int]]:
        yield from self._epoch()

    def __len__(self) -> int:
        return len(self._epoch())
