"""The knowledge base against a real Redis and the real embedder: versions, history, revert,
atomic imports, live index updates across workers, calibration, and the retrieval evaluator."""

import json
from pathlib import Path

import pytest
from redis.asyncio import Redis

from bot import AnswerPolicy, ConversationManager, Inbound, SessionKeys, SessionStore
from knowledge import (
    Embedder,
    EntryExists,
    EntryNotFound,
    FaqEntry,
    KnowledgeError,
    KnowledgeKeys,
    KnowledgeStore,
    Retriever,
    SearchIndex,
    read_entries,
)
from knowledge.evaluation import LabelledQuery, evaluate, read_queries
from tests.test_manager import ScriptedModel

RETURNS = FaqEntry("returns", "How do I return an item?", "Send it back within 30 days.")
GIFT = FaqEntry("gift-wrap", "Do you offer gift wrapping?", "Yes, for 3 euros per parcel.")


@pytest.fixture
def store(redis_client: Redis, prefix: str) -> KnowledgeStore:
    return KnowledgeStore(redis_client, KnowledgeKeys(prefix))


async def test_every_change_is_a_version_that_can_be_reverted(store: KnowledgeStore) -> None:
    first = await store.create(RETURNS)
    assert (first.version, first.entry) == (1, RETURNS)
    with pytest.raises(EntryExists, match="already exists"):
        await store.create(RETURNS)

    longer = FaqEntry(RETURNS.id, RETURNS.question, "Send it back within 60 days.")
    second = await store.update(longer, by="Olga")
    assert second.version == 2 and second.created == first.created
    assert second.updated >= first.updated
    assert (await store.get(RETURNS.id)).entry == longer
    same = await store.update(longer)
    assert same.version == 2  # nothing changed, so no new version

    await store.delete(RETURNS.id, by="command line")
    with pytest.raises(EntryNotFound):
        await store.get(RETURNS.id)
    history = await store.history(RETURNS.id)
    assert [(r.version, r.deleted, r.by) for r in history] == [
        (1, False, ""),
        (2, False, "Olga"),
        (3, True, "command line"),
    ]

    back = await store.revert(RETURNS.id, 1, by="Ivan")
    assert (back.version, back.entry, back.by) == (4, RETURNS, "Ivan")
    assert (await store.get(RETURNS.id)).entry == RETURNS
    with pytest.raises(KnowledgeError, match="is its deletion"):
        await store.revert(RETURNS.id, 3)
    with pytest.raises(EntryNotFound, match="has no version 9"):
        await store.revert(RETURNS.id, 9)
    with pytest.raises(EntryNotFound):
        await store.update(GIFT)
    with pytest.raises(EntryNotFound):
        await store.delete(GIFT.id)


async def test_imports_merge_replace_and_dry_run(
    store: KnowledgeStore, sample_entries: list[FaqEntry]
) -> None:
    first = await store.import_entries(sample_entries)
    assert (first.added, first.updated, first.unchanged) == (len(sample_entries), 0, 0)

    again = await store.import_entries(sample_entries)
    assert (again.added, again.updated, again.unchanged) == (0, 0, len(sample_entries))
    assert again.version == first.version  # a re-import changes nothing at all

    edited = [FaqEntry(e.id, e.question, e.answer + " (updated)") for e in sample_entries[:3]]
    preview = await store.import_entries([*edited, GIFT], "replace", dry_run=True)
    assert (preview.added, preview.updated, preview.removed) == (1, 3, len(sample_entries) - 3)
    assert len(await store.entries()) == len(sample_entries)  # a dry run writes nothing

    done = await store.import_entries([*edited, GIFT], "replace")
    assert (done.added, done.updated, done.removed) == (1, 3, len(sample_entries) - 3)
    assert {e.id for e in await store.entries()} == {*(e.id for e in edited), GIFT.id}
    assert (await store.get(edited[0].id)).version == 2
    removed = sample_entries[5].id
    assert (await store.history(removed))[-1].deleted


async def test_a_file_with_one_bad_line_changes_nothing(
    store: KnowledgeStore, sample_entries: list[FaqEntry], tmp_path: Path
) -> None:
    await store.import_entries(sample_entries)
    before = await store.version()
    rows = [json.dumps(e.to_dict()) for e in sample_entries[:4]]
    rows[2] = json.dumps({"id": "x", "question": "Why?"})
    path = tmp_path / "faq.jsonl"
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(KnowledgeError, match=r"faq.jsonl:3: field 'answer' is required"):
        await store.import_entries(read_entries(path))
    assert await store.version() == before
    assert await store.entries() == sorted(sample_entries, key=lambda e: e.id)


async def test_another_workers_edits_reach_the_index_without_a_rebuild(
    redis_client: Redis, prefix: str, embedder: Embedder, sample_entries: list[FaqEntry]
) -> None:
    keys = KnowledgeKeys(prefix)
    worker = Retriever(KnowledgeStore(redis_client, keys), embedder)
    operator = KnowledgeStore(redis_client, keys)
    await operator.import_entries(sample_entries)
    assert (await worker.search(GIFT.question, k=1))[0].entry.id != GIFT.id

    await operator.create(GIFT)
    hits = await worker.search("can you gift wrap my order?", k=1)
    assert hits[0].entry == GIFT
    assert set(hits[0].scores) == {"phrasing", "centroid", "answer", "lexical"}
    assert hits[0].scores["lexical"] > 0  # BM25 has the new entry too

    await operator.update(FaqEntry(GIFT.id, "Can I get my parcel gift-wrapped?", GIFT.answer))
    assert (await worker.search("gift-wrapped parcel", k=1))[0].entry.question.startswith("Can I")
    await operator.delete(GIFT.id)
    assert GIFT.id not in {h.entry.id for h in await worker.search(GIFT.question, k=5)}


async def test_calibrated_thresholds_are_stored_and_used_by_every_worker(
    redis_client: Redis, prefix: str, embedder: Embedder, sample_entries: list[FaqEntry]
) -> None:
    keys = KnowledgeKeys(prefix)
    store = KnowledgeStore(redis_client, keys)
    await store.import_entries(sample_entries)
    calibrating = Retriever(store, embedder)
    result = await calibrating.calibrate()
    assert 0 < (result.suggest or 0) <= result.answer <= result.faq <= 1
    assert result.probes == sum(len(e.texts) for e in sample_entries)
    assert await store.calibration() == result.to_dict()

    other = Retriever(KnowledgeStore(redis_client, keys), embedder)
    await other.refresh()
    assert (other.thresholds.answer, other.thresholds.faq) == (result.answer, result.faq)
    assert other.thresholds.suggest == result.suggest

    question = "how do I reset my password?"
    top = (await other.search(question, k=1))[0]
    assert top.score >= result.faq
    sessions = SessionStore(redis_client, SessionKeys(prefix))
    bot = ConversationManager(sessions, other, ScriptedModel(), AnswerPolicy())
    assert (await bot.ask(Inbound("c1", question))).mode == "faq"

    # An operator re-calibrates elsewhere (here: stricter by hand); the worker follows at once.
    await store.save_calibration({**result.to_dict(), "faq": 1.0, "answer": top.score + 0.01})
    assert (await bot.ask(Inbound("c2", question))).mode == "fallback"

    # Thresholds stored before suggestions existed: suggestions from the default, never above
    # the answer threshold.
    older = {k: v for k, v in result.to_dict().items() if k != "suggest"}
    await store.save_calibration({**older, "answer": 0.3})
    await other.refresh()
    assert other.thresholds.suggest == 0.3


async def test_the_evaluator_counts_hits_and_declines(embedder: Embedder, tmp_path: Path) -> None:
    entries = [
        RETURNS,
        GIFT,
        FaqEntry("hours", "When are you open?", "Monday to Friday, 9 to 17."),
        FaqEntry("phone", "What is your phone number?", "Call +49 30 1234567."),
    ]
    index = SearchIndex(embedder.dimensions)
    for entry in entries:
        index.upsert(entry, await embedder.embed(SearchIndex.texts_of(entry)))
    index.rebuild_lexical()
    lines = [
        {"query": "How do I return an item?", "expected_id": "returns"},
        {"query": "Do you offer gift wrapping?", "expected_id": "gift-wrap"},
        {"query": "When are you open?", "relevant_ids": ["phone", "hours"]},
        {"query": "What is your phone number?", "expected_id": "no-such-entry"},
        {"query": "Who won the football world cup in 1954?", "expected_id": None},
    ]
    path = tmp_path / "queries.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines))
    queries = read_queries(path)
    assert queries[2] == LabelledQuery("When are you open?", frozenset({"phone", "hours"}))

    result = await evaluate(index, queries, embedder.embed_query, answer_threshold=0.5)
    assert (result["n"], result["in_scope"], result["out_of_scope"]) == (5, 4, 1)
    assert (result["hit@1"], result["hit@5"], result["mrr"]) == (0.75, 0.75, 0.75)
    assert result["in_scope_accept"] == 0.75
    assert result["oos_reject"] == 1.0
    assert 0 < result["p50_ms"] <= result["p95_ms"]
    assert "in_scope_suggested" not in result

    # Nothing answered, everything near enough to suggest: the 3 in-scope queries whose entry
    # ranks first are offered it, and the out-of-scope one is offered something.
    everything = await evaluate(index, queries, embedder.embed_query, 1.01, suggest_threshold=-1)
    assert (everything["in_scope_accept"], everything["in_scope_suggested"]) == (0.0, 0.75)
    assert everything["oos_suggested"] == 1.0
    nothing = await evaluate(index, queries, embedder.embed_query, 1.01, suggest_threshold=1.01)
    assert (nothing["in_scope_suggested"], nothing["oos_suggested"]) == (0.0, 0.0)

    path.write_text('{"query": "fine"}\n{"expected_id": "x"}\n')
    with pytest.raises(KnowledgeError, match=r"queries.jsonl:2: field 'query' is required"):
        read_queries(path)


async def test_entries_changed_after_removals_are_found_by_their_vectors(
    embedder: Embedder, sample_entries: list[FaqEntry]
) -> None:
    """Removed entries free their vector rows for the next ones; the index must not mix them
    up. No BM25 here, so only the dense side can find them."""
    index = SearchIndex(embedder.dimensions)
    for entry in sample_entries:
        index.upsert(entry, await embedder.embed(SearchIndex.texts_of(entry)))
    for entry in sample_entries[:10]:
        index.remove(entry.id)
    for entry in [RETURNS, GIFT, *sample_entries[:10]]:
        index.upsert(entry, await embedder.embed(SearchIndex.texts_of(entry)))
    for entry in [RETURNS, GIFT, *sample_entries]:
        vector = await embedder.embed_query(entry.question)
        found = {h.entry.id: h for h in index.search(vector, "", k=3)}
        assert found[entry.id].entry == entry
        assert found[entry.id].scores["phrasing"] > 0.99


async def test_entries_stored_before_versions_existed_still_load(
    redis_client: Redis, store: KnowledgeStore
) -> None:
    await redis_client.hset(store.keys.entries, RETURNS.id, json.dumps(RETURNS.to_dict()))
    assert await store.entries() == [RETURNS]
    assert (await store.update(FaqEntry(RETURNS.id, "Returns?", "30 days."))).version == 2


async def test_a_customers_words_become_another_phrasing_of_an_entry(
    redis_client: Redis, prefix: str
) -> None:
    store = KnowledgeStore(redis_client, KnowledgeKeys(prefix))
    await store.create(RETURNS)
    added = await store.add_phrasing("returns", " send back a jacket that is too small ")
    assert added.entry is not None
    assert added.entry.alt_questions == ("send back a jacket that is too small",)
    again = await store.add_phrasing("returns", "send back a jacket that is too small")
    assert again.version == added.version  # a phrasing it has already: no new version
    assert [r.version for r in await store.history("returns")] == [1, 2]
    with pytest.raises(EntryNotFound, match="'gift-wrap'"):
        await store.add_phrasing("gift-wrap", "wrap it")
