"""How retrieval scores turn into answer modes, and what the bot says in each case."""

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from bot.messages import Source
from bot.team_hours import TeamHours
from engine import GenerationParams
from knowledge import Thresholds

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


@dataclass(frozen=True)
class AnswerPolicy:
    """How retrieval scores turn into answer modes, and what the bot says in each case."""

    # Score thresholds; None: the knowledge base's own, chosen by `answerdesk kb calibrate`.
    faq_threshold: float | None = None  # at or above: the operator's answer, verbatim
    grounded_threshold: float | None = None  # at or above: the model answers from the top hits
    top_k: int = 3
    history_turns: int = 4
    prompt_tokens: int = 1500  # the prompt's budget; the oldest history turns give way first
    max_message_chars: int = 4000
    handoff_after_fallbacks: int = 3  # consecutive fallbacks before a human is called; 0: never
    # A conversation an operator took but has not written in for this long goes back to the
    # assistant at the customer's next message (an operator who forgot "hand back" would
    # leave the customer unanswered for good); 0: never.
    operator_idle_s: float = 3600
    dedupe_ttl_s: int = 24 * 3600
    business: str = "our shop"
    fallback_message: str = (
        "I'm sorry, I don't know the answer to that, and I don't want to guess. "
        'Please try asking in other words, or write "human" to talk to a person.'
    )
    max_suggestions: int = 3  # FAQ questions offered when none answers well enough
    generation: GenerationParams = field(default_factory=GenerationParams)
    # A generated reply not finished by then gives way to the closest FAQ entry: the customer's
    # next messages wait for it (a session's answers come in order).
    reply_timeout_s: float = 30.0
    # When the operators work; None: customers are not told of hours.
    hours: TeamHours | None = None

    def thresholds(self, known: Thresholds) -> tuple[float, float]:
        """The scores at or above which a question gets an entry's answer verbatim, and an
        answer at all: the settings', else the knowledge base's own (`known`)."""
        faq = known.faq if self.faq_threshold is None else self.faq_threshold
        answer = known.answer if self.grounded_threshold is None else self.grounded_threshold
        return faq, answer

    def smalltalk(self, kind: str) -> str:
        return {
            "greeting": f"Hello! I'm the {self.business} assistant. Ask me about orders, "
            'shipping, returns, payments or your account, or write "human" to reach a person.',
            "thanks": "You're welcome! Is there anything else I can help with?",
            "goodbye": "Goodbye, and thank you for getting in touch!",
            "reset": "Done: I've forgotten our conversation. How can I help?",
        }[kind]

    @staticmethod
    def suggesting(suggestions: Sequence[Source]) -> str:
        """The reply that offers FAQ questions close to the customer's, none close enough to
        answer it (the channels may show them as buttons too)."""
        listed = "\n".join(f"- {s.question}" for s in suggestions)
        return (
            f"I'm not sure I understood. Did you mean:\n{listed}\n"
            'If not, please ask in other words, or write "human" to talk to a person.'
        )

    @staticmethod
    def waiting(
        place: int,
        staffed: bool = True,
        channel: str = "web",
        back: str = "",
        usual_s: float | None = None,
    ) -> str:
        """Told when put in line: where the customer is, and how long customers usually wait
        (`usual_s`) when known; and, when no operator is watching the queue, when the team is
        back (`back`, outside its hours) or that the answer may take a while. A web chat's
        customer, who may be gone by then, is asked for an e-mail address."""
        ahead = "you are next" if place == 1 else f"you are number {place} in line"
        told = f"I've asked a colleague to take over; {ahead}. They will answer here."
        if staffed:
            if usual_s is None:
                return told
            within = "a minute" if usual_s <= 60 else f"{math.ceil(usual_s / 60)} minutes"
            return f"{told} It usually takes about {within}."
        if back:
            offline = f"{told} Our team is away right now and back {back}."
        else:
            offline = f"{told} No one from our team is online right now, so this may take a while."
        if channel != "web":
            return offline
        return f"{offline} Leave your e-mail address here if you would like them to write to you."

    @staticmethod
    def still_waiting(place: int, said: str) -> str:
        """The reply to a message sent while waiting for a person (`said`): short, as the
        customer was told the rest; thanks for an e-mail address to be written to."""
        ahead = "you are next" if place == 1 else f"you are number {place} in line"
        if address := EMAIL.search(said):
            return (
                f"Thank you: if you are no longer here when they answer, they will write to "
                f"{address.group()}. {ahead[0].upper()}{ahead[1:]}."
            )
        return f"Our colleague will see this when they take over; {ahead}."
