"""Measuring retrieval on labelled queries: does the right entry come first, and does the
assistant decline what the FAQ does not cover?

Query files are JSONL: `{"query": str, "expected_id": str | null, "relevant_ids": [str]?}`; a null
`expected_id` marks a question the FAQ does not answer. Any id in `relevant_ids` counts as a hit.
"""

import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from knowledge.entry import FaqEntry
from knowledge.errors import KnowledgeError
from knowledge.index import SearchIndex


@dataclass(frozen=True)
class LabelledQuery:
    text: str
    relevant: frozenset[str]  # empty: out of scope


def read_queries(path: Path) -> list[LabelledQuery]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise KnowledgeError(f"Cannot read query file {path}: {exc}") from exc
    queries = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise KnowledgeError(f"{path}:{number}: invalid JSON ({exc.msg})") from exc
        if not isinstance(data, dict) or not isinstance(data.get("query"), str):
            raise KnowledgeError(f"{path}:{number}: field 'query' is required and must be a string")
        expected = data.get("expected_id")
        relevant = data.get("relevant_ids") or ([] if expected is None else [expected])
        if not isinstance(relevant, list) or not all(isinstance(i, str) for i in relevant):
            raise KnowledgeError(
                f"{path}:{number}: field 'expected_id' must be a string or null and "
                "'relevant_ids' a list of strings"
            )
        queries.append(LabelledQuery(data["query"], frozenset(relevant)))
    if not queries:
        raise KnowledgeError(f"Query file {path} has no queries")
    return queries


def hold_out(
    entries: list[FaqEntry], queries: list[LabelledQuery], fraction: float, seed: int = 0
) -> tuple[list[FaqEntry], list[LabelledQuery]]:
    """Remove a random `fraction` of entries; their queries become out-of-scope ones.

    This is how a labelled set without out-of-scope queries measures declining.
    """
    if not 0 <= fraction < 1:
        raise KnowledgeError(f"The held-out fraction must be in [0, 1), got {fraction}")
    removed = set(random.Random(seed).sample([e.id for e in entries], int(len(entries) * fraction)))
    kept = [e for e in entries if e.id not in removed]
    relabelled = [
        LabelledQuery(q.text, frozenset() if q.relevant & removed else q.relevant) for q in queries
    ]
    return kept, relabelled


async def evaluate(
    index: SearchIndex,
    queries: list[LabelledQuery],
    embed_query: Callable[[str], Awaitable[np.ndarray]],
    answer_threshold: float,
    suggest_threshold: float | None = None,
    max_suggestions: int = 3,
) -> dict[str, Any]:
    """hit@1, hit@5, MRR over in-scope queries; accept/reject rates at `answer_threshold`;
    per-query latency including the query embedding. With `suggest_threshold`: the share of
    in-scope queries declined but offered their entry among the suggestions (the first
    `max_suggestions` hits at or above it), and the share of out-of-scope ones offered any."""
    ranks: list[int | None] = []
    accepted_right = rejected = suggested_right = suggested_oos = 0
    latencies = []
    for query in queries:
        started = time.perf_counter()
        hits = index.search(await embed_query(query.text), query.text, k=5)
        latencies.append((time.perf_counter() - started) * 1000)
        answered = bool(hits) and hits[0].score >= answer_threshold
        offered = set()
        if not answered and suggest_threshold is not None:
            offered = {h.entry.id for h in hits[:max_suggestions] if h.score >= suggest_threshold}
        if not query.relevant:
            rejected += not answered
            suggested_oos += bool(offered)
            continue
        ids = [h.entry.id for h in hits]
        rank = next((n for n, i in enumerate(ids, start=1) if i in query.relevant), None)
        ranks.append(rank)
        accepted_right += answered and rank == 1
        suggested_right += bool(offered & query.relevant)
    in_scope = len(ranks)
    out_of_scope = len(queries) - in_scope
    return {
        "n": len(queries),
        "in_scope": in_scope,
        "out_of_scope": out_of_scope,
        "hit@1": _ratio(sum(r == 1 for r in ranks), in_scope),
        "hit@5": _ratio(sum(r is not None for r in ranks), in_scope),
        "mrr": _ratio(sum(1 / r for r in ranks if r is not None), in_scope),
        "in_scope_accept": _ratio(accepted_right, in_scope),
        "oos_reject": _ratio(rejected, out_of_scope),
        "answer_threshold": answer_threshold,
        **(
            {
                "in_scope_suggested": _ratio(suggested_right, in_scope),
                "oos_suggested": _ratio(suggested_oos, out_of_scope),
                "suggest_threshold": suggest_threshold,
            }
            if suggest_threshold is not None
            else {}
        ),
        "p50_ms": round(float(np.percentile(latencies, 50)), 2),
        "p95_ms": round(float(np.percentile(latencies, 95)), 2),
    }


def _ratio(part: float, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None
