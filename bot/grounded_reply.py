"""A reply the model writes from the FAQ entries retrieval found close enough to answer from:
streamed as it is generated, then kept only as far as the FAQ backs it (`bot.grounding`). When
the model is busy, too slow or failing, or says the FAQ does not answer, the customer gets the
closest entry instead, introduced as such."""

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from bot.grounding import supported_prefix
from bot.messages import ReplyChunk, Source, Turn
from bot.policy import AnswerPolicy
from bot.prompt import approximate_tokens, build_messages, is_refusal
from engine import ChatModel, EngineError, ModelBusy
from knowledge import Hit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Grounded:
    """The reply's final text, and the entries it came from."""

    text: str
    sources: tuple[Source, ...]


class GroundedReplies:
    def __init__(self, model: ChatModel, policy: AnswerPolicy) -> None:
        self._model = model
        self._policy = policy

    async def reply(
        self, question: str, hits: list[Hit], history: list[Turn], sources: tuple[Source, ...]
    ) -> AsyncIterator[ReplyChunk | Grounded]:
        """The model's reply to `question` from `hits` (their `sources`), after the
        conversation's `history`: `ReplyChunk`s as it is generated, then one `Grounded`."""
        policy, generated = self._policy, ""
        try:
            messages = build_messages(
                question,
                hits,
                history,
                policy.business,
                policy.prompt_tokens,
                getattr(self._model, "count_tokens", approximate_tokens),
            )
            async for chunk in _until(
                self._model.stream(messages, policy.generation), policy.reply_timeout_s
            ):
                generated += chunk
                yield ReplyChunk(chunk)
        except ModelBusy as exc:
            log.warning("%s Answering with the closest FAQ entry.", exc)
            generated = ""
        except TimeoutError:
            log.warning(
                "The model's reply took over %s s; answering with the closest FAQ entry.",
                policy.reply_timeout_s,
            )
            generated = ""
        except EngineError:
            log.exception("generation failed; answering with the closest FAQ entry")
            generated = ""
        yield checked(generated, question, hits, sources)


def checked(
    generated: str, question: str, hits: list[Hit], sources: tuple[Source, ...]
) -> Grounded:
    """Keep a generated reply only if it is an answer that invents no facts (and not an
    entry's question repeated). Otherwise, and when the model says the FAQ does not answer,
    the closest entry, hedged: retrieval found it close enough to answer from, and the model's
    refusals do not tell (measured, README "Fine-tuning": it refuses about as seldom with the
    right entry missing as with it there)."""
    faq = "\n".join(f"{h.entry.question}\n{h.entry.answer}" for h in hits)
    asked = [h.entry.question for h in hits]
    reply = (
        ""
        if is_refusal(generated)
        else supported_prefix(generated, faq, question, faq_questions=asked)
    )
    if reply:
        return Grounded(reply, sources)
    log.info("generated reply not an answer from the FAQ; answering with the closest entry")
    best = hits[0].entry
    closest = f"I'm not completely sure, but this from our FAQ may help. {best.question} "
    return Grounded(closest + best.answer, sources[:1])


async def _until(chunks: AsyncIterator[str], seconds: float) -> AsyncIterator[str]:
    """`chunks` until `seconds` have passed, then TimeoutError; the stream is closed either way
    (which frees the reply's place in the model's batch)."""
    deadline = time.monotonic() + seconds
    try:
        while True:
            try:
                yield await asyncio.wait_for(anext(chunks), deadline - time.monotonic())
            except StopAsyncIteration:
                return
    finally:
        if (close := getattr(chunks, "aclose", None)) is not None:
            await close()
