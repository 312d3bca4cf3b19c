"""Grounded-answer chats built from a knowledge base with real retrieval: the training data of
the grounding adapter (`answerdesk train make-data`) and the cases of `answerdesk eval answers`.

A question's context is what retrieval finds for it, so it holds near-miss entries (distractors).
In an answerable case the gold entry is among them (put in place of the last hit when retrieval
missed it); in an unanswerable one every gold entry is taken out and the right reply is the
refusal sentence the conversation manager detects (`bot.prompt.REFUSAL`).
"""

import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from bot.prompt import REFUSAL, build_messages
from engine import ChatMessage
from knowledge import FaqEntry, Hit

Search = Callable[[str, int], Awaitable[list[Hit]]]  # (question, k) -> hits, best first


@dataclass(frozen=True)
class GroundedCase:
    question: str
    gold: tuple[FaqEntry, ...]  # the entries that answer it
    context: tuple[Hit, ...]  # what the model is shown
    answerable: bool  # whether a gold entry is in the context

    def messages(self, business: str) -> list[ChatMessage]:
        """The prompt exactly as the conversation manager builds it (no history)."""
        return build_messages(self.question, self.context, (), business)

    def target(self) -> str:
        """The reply to train towards: the gold answer, or the refusal sentence."""
        return self.gold[0].answer if self.answerable else REFUSAL


async def grounded_case(
    question: str, gold: Sequence[FaqEntry], search: Search, k: int, answerable: bool
) -> GroundedCase:
    gold_ids = {e.id for e in gold}
    hits = await search(question, k + len(gold_ids))
    others = [h for h in hits if h.entry.id not in gold_ids]
    if answerable:
        context = [h for h in hits if h.entry.id in gold_ids][:1] + others
        context = sorted(context[:k], key=lambda h: -h.score)
        if not any(h.entry.id in gold_ids for h in context):
            context = [*context[: k - 1], Hit(gold[0], 0.0)]
    else:
        context = others[:k]
    return GroundedCase(question, tuple(gold), tuple(context), answerable)


async def training_chats(
    entries: Sequence[FaqEntry],
    search: Search,
    business: str,
    k: int = 3,
    refusal_share: float = 0.3,
    seed: int = 0,
) -> list[dict[str, object]]:
    """One chat per phrasing of every entry (its question and alt_questions): a share
    `refusal_share` of them, chosen at random, without the entry in the context and the refusal
    as the reply; the others with it and its answer as the reply."""
    rng = random.Random(seed)
    chats: list[dict[str, object]] = []
    for entry in entries:
        if not entry.answer:
            continue  # an intent without an answer text teaches nothing
        for question in entry.texts:
            answerable = rng.random() >= refusal_share
            case = await grounded_case(question, [entry], search, k, answerable)
            messages = [
                *case.messages(business),
                {"role": "assistant", "content": case.target()},
            ]
            chats.append(
                {
                    "messages": messages,
                    "meta": {"entry": entry.id, "answerable": answerable, "business": business},
                }
            )
    return chats
