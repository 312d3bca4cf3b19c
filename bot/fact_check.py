"""Catching invented facts: numbers, e-mail addresses and links a reply has but its sources lack."""

import re

_FACT = re.compile(
    r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"  # e-mail addresses
    r"|(?:https?://|www\.)[^\s)\"']+"  # links
    r"|\d+(?:[.,:]\d+)*"  # numbers, prices, times, phone number groups
)


def facts(text: str) -> set[str]:
    return {m.group(0).rstrip(".,:").lower() for m in _FACT.finditer(text)}


def unsupported_facts(reply: str, sources: str) -> set[str]:
    """The facts in `reply` that appear nowhere in `sources` (the FAQ context and the question)."""
    known = facts(sources)
    lowered = sources.lower()
    return {f for f in facts(reply) if f not in known and f not in lowered}
