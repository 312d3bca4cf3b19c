"""The conversation core with real Redis and real retrieval. The model here is scripted (these are
fast unit tests of the manager's decisions); the real model answers in test_server.py."""

import asyncio
import time
from collections.abc import AsyncIterator, Sequence

import pytest
from redis.asyncio import Redis

from bot import (
    AnswerPolicy,
    ConversationManager,
    Inbound,
    InvalidMessage,
    Reply,
    ReplyChunk,
    SessionKeys,
    SessionStore,
)
from engine import ChatMessage, EngineError, GenerationParams
from knowledge import FaqEntry, Retriever


class ScriptedModel:
    name = "scripted"

    def __init__(self, reply: str = "", fail: bool = False) -> None:
        self.reply = reply
        self.fail = fail
        self.prompts: list[Sequence[ChatMessage]] = []

    async def stream(
        self, messages: Sequence[ChatMessage], params: GenerationParams
    ) -> AsyncIterator[str]:
        self.prompts.append(messages)
        for word in self.reply.split(" "):
            yield word + " "
        if self.fail:
            raise EngineError("the model fell over")

    async def close(self) -> None:
        return None


def manager(
    redis: Redis, prefix: str, retriever: Retriever, model: ScriptedModel
) -> ConversationManager:
    sessions = SessionStore(redis, SessionKeys(prefix))
    return ConversationManager(sessions, retriever, model, AnswerPolicy(business="Pinecone"))


def by_id(entries: list[FaqEntry], entry_id: str) -> FaqEntry:
    return next(e for e in entries if e.id == entry_id)


async def test_a_confident_hit_gets_the_operators_answer_verbatim(
    redis_client: Redis, prefix: str, sample_retriever: Retriever, sample_entries: list[FaqEntry]
) -> None:
    model = ScriptedModel("should not be used")
    bot = manager(redis_client, prefix, sample_retriever, model)
    reply = await bot.ask(Inbound("s1", "how do I reset my password?"))
    assert reply.mode == "faq"
    assert reply.text == by_id(sample_entries, "account-reset-password").answer
    assert [s.id for s in reply.sources] == ["account-reset-password"]
    assert model.prompts == []
    turns = await bot.history("s1")
    assert [(t.role, t.text) for t in turns] == [
        ("user", "how do I reset my password?"),
        ("assistant", reply.text),
    ]


async def test_a_question_outside_the_faq_gets_an_honest_fallback(
    redis_client: Redis, prefix: str, sample_retriever: Retriever
) -> None:
    model = ScriptedModel("Paris is the capital of France.")
    bot = manager(redis_client, prefix, sample_retriever, model)
    reply = await bot.ask(Inbound("s1", "what is the capital of France?"))
    assert reply.mode == "fallback"
    assert "don't know" in reply.text and reply.sources == ()
    assert model.prompts == []


async def test_a_supported_generated_reply_streams_and_is_kept(
    redis_client: Redis, prefix: str, sample_retriever: Retriever
) -> None:
    text = "We accept Visa, Mastercard, American Express, PayPal, Apple Pay and Google Pay."
    model = ScriptedModel(text)
    bot = manager(redis_client, prefix, sample_retriever, model)
    events = [e async for e in bot.handle(Inbound("s1", "can I pay later"))]
    chunks = [e.text for e in events if isinstance(e, ReplyChunk)]
    reply = events[-1]
    assert isinstance(reply, Reply) and len(chunks) > 3
    assert reply.mode == "grounded" and reply.text == text
    assert "payments-methods" in [s.id for s in reply.sources]
    # The prompt carried the FAQ entries, fenced.
    assert "<faq>" in model.prompts[0][0]["content"]
    assert "Visa, Mastercard" in model.prompts[0][0]["content"]


async def test_an_invented_reply_is_replaced_by_the_closest_faq_entry(
    redis_client: Redis, prefix: str, sample_retriever: Retriever, sample_entries: list[FaqEntry]
) -> None:
    model = ScriptedModel("Sure! Call 111-111-1111 and our bicycle team will help.")
    bot = manager(redis_client, prefix, sample_retriever, model)
    reply = await bot.ask(Inbound("s1", "can I pay later"))
    assert reply.mode == "grounded"
    assert "111" not in reply.text
    assert by_id(sample_entries, "payments-methods").answer in reply.text


async def test_the_models_refusal_gives_the_closest_faq_entry_hedged(
    redis_client: Redis, prefix: str, sample_retriever: Retriever, sample_entries: list[FaqEntry]
) -> None:
    model = ScriptedModel("I'm sorry, I can't find the answer to that in our FAQ.")
    bot = manager(redis_client, prefix, sample_retriever, model)
    reply = await bot.ask(Inbound("s1", "can I pay later"))
    assert reply.mode == "grounded"
    assert reply.text.startswith("I'm not completely sure")
    assert by_id(sample_entries, "payments-methods").answer in reply.text
    assert [s.id for s in reply.sources] == ["payments-methods"]


async def test_a_reply_that_repeats_an_faq_question_gives_the_closest_entry_hedged(
    redis_client: Redis, prefix: str, sample_retriever: Retriever, sample_entries: list[FaqEntry]
) -> None:
    """Seen with the shipped adapter: "my parcel has not arrived" answered with an entry's
    question. Every word of it is the FAQ's, but it answers nothing."""
    methods = by_id(sample_entries, "payments-methods")
    model = ScriptedModel(methods.question)
    bot = manager(redis_client, prefix, sample_retriever, model)
    reply = await bot.ask(Inbound("s1", "can I pay later"))
    assert reply.mode == "grounded"
    assert reply.text.startswith("I'm not completely sure") and methods.answer in reply.text


class StallingModel(ScriptedModel):
    """Writes a few words, then nothing more: a model starved of CPU."""

    closed = False

    async def stream(
        self, messages: Sequence[ChatMessage], params: GenerationParams
    ) -> AsyncIterator[str]:
        try:
            yield "We accept "
            await asyncio.sleep(3600)
        finally:
            self.closed = True


async def test_a_reply_the_model_does_not_finish_in_time_gives_way_to_the_closest_entry(
    redis_client: Redis, prefix: str, sample_retriever: Retriever, sample_entries: list[FaqEntry]
) -> None:
    model = StallingModel()
    sessions = SessionStore(redis_client, SessionKeys(prefix))
    policy = AnswerPolicy(business="Pinecone", reply_timeout_s=0.5)
    bot = ConversationManager(sessions, sample_retriever, model, policy)
    started = time.monotonic()
    reply = await bot.ask(Inbound("s1", "can I pay later"))
    assert time.monotonic() - started < 5
    assert reply.mode == "grounded" and reply.text.startswith("I'm not completely sure")
    assert by_id(sample_entries, "payments-methods").answer in reply.text
    assert model.closed  # its place in the model's batch is given back
    # The customer's next message is not held up behind it.
    assert (await bot.ask(Inbound("s1", "how do I reset my password?"))).mode == "faq"
    assert len(await bot.history("s1")) == 4


async def test_an_engine_failure_still_answers_politely(
    redis_client: Redis, prefix: str, sample_retriever: Retriever, sample_entries: list[FaqEntry]
) -> None:
    model = ScriptedModel("We accept", fail=True)
    bot = manager(redis_client, prefix, sample_retriever, model)
    reply = await bot.ask(Inbound("s1", "can I pay later"))
    assert by_id(sample_entries, "payments-methods").answer in reply.text
    assert len(await bot.history("s1")) == 2


@pytest.mark.parametrize(("text", "problem"), [("   ", "empty"), ("x" * 4001, "limit is 4000")])
async def test_unanswerable_messages_are_refused_and_not_stored(
    redis_client: Redis, prefix: str, sample_retriever: Retriever, text: str, problem: str
) -> None:
    bot = manager(redis_client, prefix, sample_retriever, ScriptedModel())
    with pytest.raises(InvalidMessage, match=problem):
        await bot.ask(Inbound("s1", text))
    assert await bot.history("s1") == []


async def test_the_prompt_carries_recent_history(
    redis_client: Redis, prefix: str, sample_retriever: Retriever
) -> None:
    model = ScriptedModel("We accept Visa and Mastercard.")
    bot = manager(redis_client, prefix, sample_retriever, model)
    await bot.ask(Inbound("s1", "how do I reset my password?"))
    await bot.ask(Inbound("s1", "can I pay later"))
    roles = [m["role"] for m in model.prompts[0]]
    assert roles == ["system", "user", "assistant", "user"]
    assert "reset my password" in model.prompts[0][1]["content"]
