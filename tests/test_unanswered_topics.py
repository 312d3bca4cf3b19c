"""The unanswered queue by topic, with the real embedder and a real Redis: questions asked in
other words about one thing come together, the most asked first."""

from redis.asyncio import Redis

from bot import FeedbackLog, SessionKeys, SessionStore, UnansweredTopics
from knowledge import Retriever


async def test_questions_about_one_thing_come_together_the_most_asked_first(
    redis_client: Redis, prefix: str, sample_retriever: Retriever
) -> None:
    feedback = FeedbackLog(SessionStore(redis_client, SessionKeys(prefix)))
    asked = [
        "do you offer gift wrapping",
        "do you ship to canada?",
        "what is the meaning of life",
        "can you send my order to Canada",
        "can you gift wrap it for me?",
        "shipping to canada possible?",
    ]
    for n, question in enumerate(asked):
        await feedback.add("fallback", f"s{n}", question, "I don't know.")
    topics = UnansweredTopics(feedback, sample_retriever)
    found = await topics.topics()
    assert [[i.question for i in t.items] for t in found] == [
        [
            "do you ship to canada?",
            "can you send my order to Canada",
            "shipping to canada possible?",
        ],
        ["do you offer gift wrapping", "can you gift wrap it for me?"],
        ["what is the meaning of life"],
    ]
    # The knowledge base sets how close is close enough: between its own different entries'
    # phrasings and a paraphrase.
    assert 0.3 < await sample_retriever.topic_threshold() < 0.8

    # Answered or dismissed, a question leaves its topic.
    await feedback.dismiss(found[0].items[0].id)
    again = await topics.topics()
    assert [len(t.items) for t in again] == [2, 2, 1]
    assert again[0].items[0].question == "can you send my order to Canada"
