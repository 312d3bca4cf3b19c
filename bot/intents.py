"""Recognising the few messages that are not questions for the FAQ: asking for a human, resetting
the conversation, greetings and thanks. Pure functions, no I/O."""

import re
from typing import Literal

Intent = Literal["human", "reset", "greeting", "thanks", "goodbye"]

_HUMAN = re.compile(
    r"^/human\b"
    r"|\b(talk|speak|chat|connect me|put me through)\b.{0,30}\b(human|person|agent|operator|"
    r"someone|somebody|representative|staff|colleague|real)\b"
    r"|^\s*(human|agent|operator|representative|real person|a human|a person)\s*[.!?]*\s*$"
    r"|\b(human|real person|live agent|live chat|customer service agent) please\b",
    re.IGNORECASE,
)
_RESET = re.compile(r"^/(reset|restart|start over)\s*$", re.IGNORECASE)
_GREETING = re.compile(
    r"^(hi|hello|hey|hiya|howdy|good (morning|afternoon|evening)|greetings|/start)"
    r"( there| all| team)?[\s!.,]*$",
    re.IGNORECASE,
)
_THANKS = re.compile(
    r"^(ok(ay)?[, ]+)?(thanks?( you)?|thx|ty|cheers|great,? thanks?|perfect,? thanks?|many thanks)"
    r"( (so|very) much| a lot)?[\s!.,:)]*$",
    re.IGNORECASE,
)
_GOODBYE = re.compile(r"^(bye|goodbye|see you|ciao|have a nice day)[\s!.,]*$", re.IGNORECASE)


def intent(text: str) -> Intent | None:
    """The intent of `text` when it is one of the recognised kinds, else None (a question)."""
    text = text.strip()
    if _RESET.match(text):
        return "reset"
    if _HUMAN.search(text):
        return "human"
    if _GREETING.match(text):
        return "greeting"
    if _THANKS.match(text):
        return "thanks"
    if _GOODBYE.match(text):
        return "goodbye"
    return None
