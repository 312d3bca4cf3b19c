"""Recognising the few messages that are not questions for the FAQ: asking for a human, resetting
the conversation, greetings (with openings such as "hi, I have a question"), thanks and goodbyes.
Pure functions, no I/O.

Thanks and goodbyes come in many words ("thank you so much, that helped!", "ok thanks bye",
"great, that's all"): a message made only of courtesy words, with at least one that thanks, says
goodbye or acknowledges, is one of them; a single word outside that vocabulary ("thanks, where is
my parcel?") makes it a question for the FAQ. Answered as a question, such a message got "I don't
know the answer to that", counted towards the hand-off after repeated unanswered questions, and
showed up in the operators' unanswered list."""

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
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def _words(listed: str) -> frozenset[str]:
    return frozenset(listed.split())


_THANKS = _words(
    "thanks thank thankyou thx tnx ty cheers appreciated appreciate grateful danke merci"
)
_ACKNOWLEDGE = _words(
    "ok okay k kk alright allright great perfect awesome cool nice excellent wonderful super "
    "fantastic brilliant lovely understood noted got fine good sure helped helpful"
)
_GOODBYE = _words("bye goodbye byebye cya ciao farewell goodnight")
_CLOSING = re.compile(
    r"\b(that'?s all|that is all|nothing else|see (you|ya)|have a (nice|good|great) (day|one)|"
    r"take care|talk (to you )?later)\b"
)
_FILLER = _words(
    "you so very much a lot for the your help helping that that's thats this it it's its "
    "helps all is was no nope else have day today see later again many really i i'll "
    "will do then take care ya and guys team everyone mate too indeed oh ah sounds one talk "
    "to"
)
_COURTESY = _THANKS | _ACKNOWLEDGE | _GOODBYE | _FILLER
_GREETING_WORDS = _words("hi hello hey hiya howdy greetings morning afternoon evening hallo")
_OPENING_ASKS = _words("question questions help anyone anybody someone somebody")
_OPENING = _OPENING_ASKS | _words(
    "good there all team i i'd have a an quick small some can could would you u me please need "
    "want like to ask something is are here with got one few"
)
_OPENING_VOCABULARY = _GREETING_WORDS | _OPENING
_THANKFUL = _THANKS | _ACKNOWLEDGE
# First words that close the conversation with the rest ("no thanks", "nothing else"); "nothing"
# only there ("thank you for nothing" is no thanks).
_DECLINE = frozenset(("no", "nope", "nothing"))
_THANKFUL_EMOJI = frozenset("👍🙏😊🙂👌❤")
MAX_COURTESY_WORDS = 12


def intent(text: str) -> Intent | None:
    """The intent of `text` when it is one of the recognised kinds, else None (a question)."""
    text = text.strip()
    if _RESET.match(text):
        return "reset"
    if _HUMAN.search(text):
        return "human"
    lowered = text.lower().replace("\u2019", "'")
    words = _WORD.findall(lowered)
    if _GREETING.match(text) or _opening(words):
        return "greeting"
    return _courtesy(text, lowered, words)


def _opening(words: list[str]) -> bool:
    """Whether `words` only open the conversation ("hi, I have a question", "hello, can you help
    me?", "is anyone there?"): greeting and opening words only, at least one of them a greeting or
    a request for help. Answered as a question, it got "I don't know the answer to that"."""
    return (
        0 < len(words) <= MAX_COURTESY_WORDS
        and all(w in _OPENING_VOCABULARY for w in words)
        and bool(_GREETING_WORDS.intersection(words) or _OPENING_ASKS.intersection(words))
    )


def _courtesy(text: str, lowered: str, words: list[str]) -> Intent | None:
    """Goodbye or thanks when `text` (`lowered`, split into `words`) is made of courtesy words only
    (see the module), else None."""
    if not words:
        return "thanks" if _THANKFUL_EMOJI & set(text) else None
    declined = words[0] in _DECLINE and len(words) > 1  # a bare "no" may disagree
    if (
        text.rstrip().endswith("?")  # "is it good?" asks something
        or len(words) > MAX_COURTESY_WORDS
        or any(w not in _COURTESY for w in words[declined:])
    ):
        return None
    if _GOODBYE.intersection(words) or _CLOSING.search(lowered) or declined:
        return "goodbye"
    if _THANKFUL.intersection(words):
        return "thanks"
    return None
