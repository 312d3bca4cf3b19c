"""Keeping generated replies to what the FAQ says.

A small model drifts: it starts with the FAQ's words and goes on to invent shops, prices and
phone numbers. A reply is cut at its first sentence that the sources do not support, where a
sentence is supported when every fact in it (numbers, e-mail addresses, links) appears in the
sources and most of its content words do. It may also repeat an entry's question instead of
answering it ("An item is missing from my parcel. What should I do?" to "my parcel has not
arrived"): such sentences are left out, and a reply made of nothing else is no answer.
"""

import re
from collections.abc import Iterable

_FACT = re.compile(
    r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"  # e-mail addresses
    r"|(?:https?://|www\.)[^\s)\"']+"  # links
    r"|\d+(?:[.,:/-]\d+)*"  # numbers, prices, times, dates, phone number groups
)
_WORD = re.compile(r"[a-zà-ÿ]{4,}")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
# Words that carry no claim: a sentence made only of these says nothing the FAQ must back.
_FUNCTION_WORDS = frozenset(
    re.findall(
        r"\S+",
        "about also been before being both can't could does don't each from have here into just "
        "make more most much need only other over please same should some such than that their "
        "them then there these they this those very want were what when where which while will "
        "with would your yours you're sure help happy course thank thanks",
    )
)


def facts(text: str) -> set[str]:
    return {m.group(0).rstrip(".,:").lower() for m in _FACT.finditer(text)}


def _stem(word: str) -> str:
    return word[:6]  # crude, but enough to match "deliver"/"delivery", "returns"/"returned"


def unsupported_facts(text: str, sources: str) -> set[str]:
    """The facts in `text` that appear nowhere in `sources`."""
    known = facts(sources)
    lowered = sources.lower()
    return {f for f in facts(text) if f not in known and f not in lowered}


def _content_words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in _FUNCTION_WORDS]


def word_support(text: str, sources: str) -> float:
    """The share of `text`'s content words that `sources` uses too (1.0 when it has none)."""
    vocabulary = {_stem(w) for w in _WORD.findall(sources.lower())}
    words = _content_words(text)
    if not words:
        return 1.0
    return sum(_stem(w) in vocabulary for w in words) / len(words)


def _plain(sentence: str) -> str:
    return " ".join(re.findall(r"[^\W_]+", sentence.lower()))


def supported_prefix(
    reply: str,
    faq: str,
    question: str = "",
    min_support: float = 0.8,
    min_words: int = 3,
    faq_questions: Iterable[str] = (),
) -> str:
    """The longest run of leading sentences of `reply` that the `faq` text supports, without
    the sentences that repeat one of `faq_questions` (the FAQ entries' questions).

    Facts may come from the FAQ or the customer's question; content words must come from the FAQ
    (echoing the question's words is no evidence). A prefix with fewer than `min_words` content
    words ("Yes, you can.") says nothing checkable and is rejected: the result is then empty.
    """
    asked = {_plain(s) for q in faq_questions for s in _SENTENCE_END.split(q.strip())}
    kept: list[str] = []
    words = 0
    for sentence in _SENTENCE_END.split(reply.strip()):
        sentence = sentence.strip()
        if not sentence or _plain(sentence) in asked:
            continue
        if unsupported_facts(sentence, faq + "\n" + question):
            break
        if word_support(sentence, faq) < min_support:
            break
        kept.append(sentence)
        words += len(_content_words(sentence))
    return " ".join(kept) if words >= min_words else ""
