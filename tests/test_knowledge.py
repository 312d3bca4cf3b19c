"""FAQ files, the Redis-backed store and retrieval with the real bundled embedder."""

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
from redis.asyncio import Redis

from engine.loading import bf16_hardware
from engine.onnx_export import export_onnx
from knowledge import (
    Embedder,
    FaqEntry,
    KnowledgeError,
    KnowledgeKeys,
    KnowledgeStore,
    OnnxQueries,
    Retriever,
    read_entries,
)

POLICY_GROUNDED_THRESHOLD = 0.45  # AnswerPolicy's default: below it the bot says it does not know


def write(path: Path, rows: list[object]) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def test_sample_faq_is_a_real_shop_faq(sample_entries: list[FaqEntry]) -> None:
    assert 28 <= len(sample_entries) <= 40
    tags = {t for e in sample_entries for t in e.tags}
    assert {"account", "orders", "shipping", "returns", "payments", "contact"} <= tags
    assert all(e.answer and e.alt_questions for e in sample_entries)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (['{"id": "a", "question": "Q?", "answer": "A."}', "{not json"], ":2: invalid JSON"),
        ([{"id": "a", "answer": "A."}], ":1: field 'question' is required"),
        ([{"id": "a", "question": "Q?", "answer": "A.", "tags": "x"}], "field 'tags' must be"),
        ([{"id": "a b", "question": "Q?", "answer": "A."}], "field 'id' must be"),
        (
            [
                {"id": "a", "question": "Q?", "answer": "A."},
                {"id": "a", "question": "R?", "answer": "B."},
            ],
            ":2: field 'id' repeats 'a'",
        ),
    ],
)
def test_bad_faq_files_name_the_line_and_field(
    tmp_path: Path, rows: list[object], message: str
) -> None:
    with pytest.raises(KnowledgeError, match=message.replace("(", r"\(")):
        read_entries(write(tmp_path / "faq.jsonl", rows))


async def test_replace_is_one_versioned_transaction(
    redis_client: Redis, prefix: str, sample_entries: list[FaqEntry]
) -> None:
    store = KnowledgeStore(redis_client, KnowledgeKeys(prefix))
    assert await store.version() == 0 and await store.entries() == []
    v1 = await store.replace(sample_entries)
    assert sorted(await store.entries(), key=lambda e: e.id) == sorted(
        sample_entries, key=lambda e: e.id
    )
    v2 = await store.replace(sample_entries[:2])
    assert v2 == v1 + 1
    assert {e.id for e in await store.entries()} == {e.id for e in sample_entries[:2]}


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("how do I reset my password?", "account-reset-password"),
        ("I forgot my login password, help", "account-reset-password"),
        ("are you open on sunday", "contact-hours"),
        ("can I get my money back", "refunds-time"),
        ("do you ship to canada", "shipping-countries"),
        ("I got charged two times", "payments-charged-twice"),
        ("what's your phone number", "contact-reach"),
    ],
)
async def test_paraphrases_find_their_entry(
    sample_retriever: Retriever, question: str, expected: str
) -> None:
    hits = await sample_retriever.search(question, k=3)
    assert hits[0].entry.id == expected
    assert hits[0].score > hits[1].score


@pytest.mark.parametrize(
    "question",
    [
        "what is the capital of France?",
        "who won the football match yesterday",
        "how do I cook pasta",
    ],
)
async def test_questions_outside_the_faq_score_low(
    sample_retriever: Retriever, question: str
) -> None:
    hits = await sample_retriever.search(question, k=1)
    assert hits[0].score < POLICY_GROUNDED_THRESHOLD


async def test_an_import_by_another_process_is_seen_at_the_next_question(
    redis_client: Redis, prefix: str, embedder: Embedder, sample_entries: list[FaqEntry]
) -> None:
    store = KnowledgeStore(redis_client, KnowledgeKeys(prefix))
    await store.replace(sample_entries)
    retriever = Retriever(store, embedder)
    hits = await retriever.search("can I bring my dog into the shop?", k=1)
    assert hits[0].entry.id != "dogs"
    other_writer = KnowledgeStore(redis_client, KnowledgeKeys(prefix))
    dogs = FaqEntry("dogs", "Are dogs allowed in the shop?", "Yes, well-behaved dogs are welcome.")
    await other_writer.replace([*sample_entries, dogs])
    hits = await retriever.search("can I bring my dog into the shop?", k=1)
    assert hits[0].entry == dogs


async def test_questions_asked_while_a_large_change_is_taken_in_get_the_index_as_it_was(
    redis_client: Redis, prefix: str, embedder: Embedder, sample_entries: list[FaqEntry]
) -> None:
    """A large import takes seconds to embed; customers' questions meanwhile are answered from
    the index as it was (measured: a 1,000-entry import held every question for up to 16 s)."""
    store = KnowledgeStore(redis_client, KnowledgeKeys(prefix))
    await store.replace(sample_entries)
    embedding = asyncio.Event()  # the FAQ's texts are embedded only while it is set

    class Gated:
        name, dimensions = embedder.name, embedder.dimensions
        threshold_shift = embedder.threshold_shift
        embed_query = embedder.embed_query

        async def embed(self, texts: list[str]) -> np.ndarray:
            await embedding.wait()
            return await embedder.embed(texts)

    embedding.set()
    retriever = Retriever(store, Gated())
    await retriever.refresh()
    embedding.clear()
    dogs = FaqEntry("dogs", "Are dogs allowed in the shop?", "Yes, well-behaved dogs are welcome.")
    await KnowledgeStore(redis_client, KnowledgeKeys(prefix)).import_entries([dogs], "merge")

    async with asyncio.timeout(60):  # (it used to wait for the embedding: here, for ever)
        hits = await retriever.search("can I bring my dog into the shop?", k=1)  # still embedding
    assert hits and hits[0].entry.id != "dogs"
    embedding.set()
    await retriever.refresh()  # waits for the change to be in
    hits = await retriever.search("can I bring my dog into the shop?", k=1)
    assert hits[0].entry == dogs


async def test_an_import_embedded_before_it_is_stored_is_taken_in_by_workers_without_embedding(
    redis_client: Redis, prefix: str, sample_entries: list[FaqEntry]
) -> None:
    """`kb import` and the import route embed a file's texts before storing it: the running
    servers then read the vectors from Redis instead of each embedding them again."""
    keys = KnowledgeKeys(prefix)
    store = KnowledgeStore(redis_client, keys)
    await store.replace(sample_entries)
    embedded: list[str] = []

    class Counting(Embedder):
        def encode(self, texts: list[str]) -> np.ndarray:
            embedded.extend(texts)
            return super().encode(texts)

    worker = Retriever(store, Counting(None, redis_client, keys))
    await worker.refresh()
    embedded.clear()
    dogs = FaqEntry(
        "dogs",
        "Are dogs allowed in the shop?",
        "Yes, well-behaved dogs are welcome.",
        alt_questions=("can my puppy come along",),
    )
    importer = Retriever(store, Embedder(None, redis_client, keys))
    await importer.prepare([dogs])
    await store.import_entries([dogs], "merge")
    hits = await worker.search("can I bring my dog into the shop?", k=1)
    assert hits[0].entry == dogs
    assert embedded == ["can I bring my dog into the shop?"]  # the question, none of the FAQ


async def test_questions_encoded_by_onnxruntime_match_torch_and_are_exported_once(
    redis_url: str, prefix: str, embedder: Embedder, tmp_path: Path
) -> None:
    client = Redis.from_url(redis_url)
    onnx = OnnxQueries(tmp_path, export_onnx)
    fast = Embedder(None, client, KnowledgeKeys(prefix), onnx=onnx)
    exported = tmp_path / f"{fast.name}.onnx"
    assert exported.is_file()
    questions = [
        "do you deliver to austria",
        "my password doesnt work",
        "when are you open " * 200,  # longer than the model reads: cut the same way
    ]
    alone = [await fast.embed_query(q) for q in questions]
    together = await asyncio.gather(*(fast.embed_query(q) for q in questions))  # one batch
    for question, a, b in zip(questions, alone, together, strict=True):
        exact = await embedder.embed_query(question)
        assert float(exact @ a) > 0.9999 and float(exact @ b) > 0.9999

    stamp = exported.stat().st_mtime_ns
    Embedder(None, client, KnowledgeKeys(prefix), onnx=onnx)  # a restart reuses it
    assert exported.stat().st_mtime_ns == stamp
    exported.write_bytes(b"half a model")
    with pytest.raises(KnowledgeError, match="delete it to export it again"):
        Embedder(None, client, KnowledgeKeys(prefix), onnx=onnx)
    await client.aclose()


async def test_embeddings_are_cached_in_redis(redis_url: str, prefix: str) -> None:
    client = Redis.from_url(redis_url)
    keys = KnowledgeKeys(prefix)
    first = Embedder(None, client, keys)
    texts = ["How long does shipping take?", "Which payment methods do you accept?"]
    vectors = await first.embed(texts)
    assert vectors.shape == (2, 384)
    assert len([k async for k in client.scan_iter(match=f"{prefix}:emb:*")]) == 2

    class NoEncoding(Embedder):
        def encode(self, texts: list[str]) -> np.ndarray:
            raise AssertionError(f"re-embedded {texts}")

    again = await NoEncoding(None, client, keys).embed(texts)
    assert (again == vectors).all()
    await client.aclose()


@pytest.mark.skipif(
    not bf16_hardware(), reason="this CPU has no bfloat16 instructions (AVX-512 BF16 / AMX)"
)
async def test_the_bfloat16_embedder_finds_the_same_entries_and_is_cached_apart(
    redis_url: str, prefix: str, embedder: Embedder, sample_entries: list[FaqEntry]
) -> None:
    client = Redis.from_url(redis_url)
    fast = Embedder(None, client, KnowledgeKeys(prefix), dtype="bfloat16")
    texts = [e.question for e in sample_entries]
    exact, rounded = await embedder.embed(texts), await fast.embed(texts)
    assert float((exact * rounded).sum(axis=1).min()) > 0.99
    assert fast.name != embedder.name  # float32's cached vectors are not mixed in
    questions = ["do you deliver to austria", "my password doesnt work", "when are you open"]
    for question in questions:
        a, b = await embedder.embed_query(question), await fast.embed_query(question)
        assert int(np.argmax(exact @ a)) == int(np.argmax(rounded @ b))
    await client.aclose()


async def test_questions_asked_at_once_are_encoded_together_with_the_same_vectors(
    embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    questions = [f"can I return order number {n} after {n % 7 + 2} weeks?" for n in range(24)]
    alone = [await embedder.embed_query(q) for q in questions]
    batches: list[int] = []
    encode = embedder.encode

    def counted(texts: list[str]) -> np.ndarray:
        batches.append(len(texts))
        return encode(texts)

    monkeypatch.setattr(embedder, "encode", counted)
    together = await asyncio.gather(*(embedder.embed_query(q) for q in questions))
    assert sum(batches) == len(questions) and len(batches) < len(questions) / 2
    for a, b in zip(alone, together, strict=True):
        assert float(a @ b) > 0.9999  # the same direction, whichever batch it rode in
