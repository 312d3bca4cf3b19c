"""Measuring generated answers on labelled questions (`answerdesk eval answers`).

Every question is asked twice: once with its gold entry in the context (answerable) and once
with it taken out (unanswerable). Four figures come out:

- `token_f1`: SQuAD-style token F1 of the reply against the gold answer, over answerable cases;
- `invented_fact_rate`: the share of replies with a fact (number, phone number, link, e-mail,
  money amount) that neither the context nor the question contains;
- `refusal_rate_unanswerable`: the share of unanswerable cases answered with the refusal;
- `false_refusal_rate`: the share of answerable cases answered with the refusal.
"""

import asyncio
import re
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from tqdm import tqdm

from bot.grounded_chats import GroundedCase
from bot.grounding import unsupported_facts
from bot.prompt import is_refusal
from engine import ChatModel, GenerationParams, generate

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def answer_tokens(text: str) -> list[str]:
    """Lower-cased words without punctuation and articles (the SQuAD normalisation)."""
    return _ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION)).split()


def token_f1(reply: str, gold: str) -> float:
    predicted, expected = answer_tokens(reply), answer_tokens(gold)
    common = sum((Counter(predicted) & Counter(expected)).values())
    if not predicted or not expected or not common:
        return float(predicted == expected)
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


@dataclass(frozen=True)
class Scored:
    case: GroundedCase
    reply: str
    refused: bool
    invented: frozenset[str]  # the reply's facts found in neither the context nor the question
    f1: float | None  # answerable cases only


def score(case: GroundedCase, reply: str) -> Scored:
    context = "\n".join(f"{h.entry.question}\n{h.entry.answer}" for h in case.context)
    invented = frozenset(unsupported_facts(reply, context + "\n" + case.question))
    f1 = max(token_f1(reply, e.answer) for e in case.gold) if case.answerable else None
    return Scored(case, reply, is_refusal(reply), invented, f1)


def summarize(scored: Sequence[Scored]) -> dict[str, float | int | None]:
    answerable = [s for s in scored if s.case.answerable]
    unanswerable = [s for s in scored if not s.case.answerable]

    def share(items: Sequence[Scored], total: float) -> float | None:
        return round(total / len(items), 4) if items else None

    return {
        "n": len({s.case.question for s in scored}),
        "replies": len(scored),
        "token_f1": share(answerable, sum(s.f1 or 0.0 for s in answerable)),
        "invented_fact_rate": share(scored, sum(bool(s.invented) for s in scored)),
        "refusal_rate_unanswerable": share(unanswerable, sum(s.refused for s in unanswerable)),
        "false_refusal_rate": share(answerable, sum(s.refused for s in answerable)),
    }


async def answer_cases(
    cases: Sequence[GroundedCase],
    model: ChatModel,
    params: GenerationParams,
    business: str,
    concurrency: int = 8,
    progress: bool = False,
) -> list[Scored]:
    """Each case's reply from `model`, scored; `concurrency` replies are generated at once."""
    limit = asyncio.Semaphore(concurrency)
    bar = tqdm(total=len(cases), desc="answers", unit="reply", disable=not progress)

    async def one(case: GroundedCase) -> Scored:
        async with limit:
            reply = await generate(model, case.messages(business), params)
        bar.update()
        return score(case, reply)

    try:
        return list(await asyncio.gather(*(one(c) for c in cases)))
    finally:
        bar.close()
