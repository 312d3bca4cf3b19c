"""The conversation core every channel calls: one inbound message in, reply events out."""

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from bot.errors import ConversationError
from bot.grounding import supported_prefix
from bot.messages import Inbound, Mode, Reply, ReplyChunk, ReplyEvent, Source, Turn
from bot.prompt import REFUSAL, build_messages
from bot.session_store import SessionStore
from engine import ChatModel, EngineError, GenerationParams
from knowledge import Hit, KnowledgeError, Retriever

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnswerPolicy:
    """How retrieval scores turn into answer modes, and what the bot says when it cannot help."""

    faq_threshold: float = 0.70  # at or above: the operator's answer, verbatim
    grounded_threshold: float = 0.45  # at or above: the model answers from the top hits
    top_k: int = 3
    history_turns: int = 4
    max_message_chars: int = 4000
    business: str = "our shop"
    fallback_message: str = (
        "I'm sorry, I don't know the answer to that, and I don't want to guess. "
        "Please try asking in other words, or contact our support team."
    )
    generation: GenerationParams = field(default_factory=GenerationParams)


class InvalidMessage(ConversationError):
    """The customer's message cannot be answered as sent (empty or too long)."""


class ConversationManager:
    def __init__(
        self,
        sessions: SessionStore,
        retriever: Retriever,
        model: ChatModel,
        policy: AnswerPolicy | None = None,
    ) -> None:
        self._sessions = sessions
        self._retriever = retriever
        self._model = model
        self.policy = policy or AnswerPolicy()

    async def handle(self, inbound: Inbound) -> AsyncIterator[ReplyEvent]:
        """Answer one message: retrieve, decide the mode, generate if needed, store the turn.

        Yields `ReplyChunk`s while a grounded reply is generated, then exactly one `Reply`, whose
        text is authoritative. Turns of one session never interleave (a Redis lock).
        """
        text = inbound.text.strip()
        if not text:
            raise InvalidMessage("The message is empty; type a question.")
        if len(text) > self.policy.max_message_chars:
            raise InvalidMessage(
                f"The message is {len(text)} characters long; the limit is "
                f"{self.policy.max_message_chars}."
            )
        async with self._sessions.locked(inbound.session_id):
            asked = Turn(role="user", text=text, ts=time.time())
            hits = await self._retrieve(text)
            top = hits[0] if hits else None
            sources = tuple(Source(h.entry.id, h.entry.question, h.score) for h in hits)
            mode: Mode
            if top is not None and top.score >= self.policy.faq_threshold:
                mode, reply_text, sources = "faq", top.entry.answer, sources[:1]
            elif top is not None and top.score >= self.policy.grounded_threshold:
                relevant = [h for h in hits if h.score >= self.policy.grounded_threshold]
                sources = sources[: len(relevant)]
                history = await self._sessions.history(
                    inbound.session_id, last=self.policy.history_turns
                )
                generated = ""
                try:
                    messages = build_messages(text, relevant, history, self.policy.business)
                    async for chunk in self._model.stream(messages, self.policy.generation):
                        generated += chunk
                        yield ReplyChunk(chunk)
                except EngineError:
                    log.exception("generation failed; answering with the closest FAQ entry")
                    generated = ""
                mode, reply_text, sources = self._check_grounded(generated, text, relevant, sources)
            else:
                mode, reply_text, sources = "fallback", self.policy.fallback_message, ()
            reply = Reply(inbound.session_id, reply_text, mode, sources)
            answered = Turn("assistant", reply_text, time.time(), mode, sources)
            await self._sessions.append(inbound.session_id, [asked, answered])
        yield reply

    async def ask(self, inbound: Inbound) -> Reply:
        """The final reply of `handle`, for channels that do not stream."""
        async for event in self.handle(inbound):
            if isinstance(event, Reply):
                return event
        raise ConversationError("The conversation core produced no reply.")  # pragma: no cover

    async def history(self, session_id: str) -> list[Turn]:
        return await self._sessions.history(session_id)

    async def _retrieve(self, text: str) -> list[Hit]:
        try:
            return await self._retriever.search(text, k=self.policy.top_k)
        except KnowledgeError:
            log.exception("retrieval failed; answering with the fallback message")
            return []

    def _check_grounded(
        self, generated: str, question: str, hits: list[Hit], sources: tuple[Source, ...]
    ) -> tuple[Mode, str, tuple[Source, ...]]:
        """Keep a generated reply only if it is an answer that invents no facts."""
        if REFUSAL.lower().rstrip(".") in generated.lower():
            return "fallback", self.policy.fallback_message, ()
        faq = "\n".join(f"{h.entry.question}\n{h.entry.answer}" for h in hits)
        reply = supported_prefix(generated, faq, question)
        if reply:
            return "grounded", reply, sources
        log.info("generated reply not supported by the FAQ; answering with the closest entry")
        best = hits[0].entry
        closest = f"I'm not completely sure, but this from our FAQ may help. {best.question} "
        closest += best.answer
        return "grounded", closest, sources[:1]
