"""Which messages are thanks, goodbyes, greetings or requests for a person, and which are questions
for the FAQ: customers open and close a conversation in many words, and a question must never be
taken for a courtesy (it would get "You're welcome!" or "Hello!" instead of an answer)."""

import pytest

from bot.intents import intent

COURTESIES = {
    "thanks": "thanks",
    "Thanks a lot :)": "thanks",
    "thank you so much, that helped!": "thanks",
    "Perfect, thank you very much for your help!": "thanks",
    "I'll do that, thanks": "thanks",
    "ok": "thanks",
    "got it": "thanks",
    "that helped": "thanks",
    "cheers mate": "thanks",
    "👍": "thanks",
    "thanks, bye": "goodbye",
    "ok thanks bye": "goodbye",
    "great, that's all": "goodbye",
    "no thanks": "goodbye",
    "no, that\u2019s all, thank you": "goodbye",
    "nothing else": "goodbye",
    "have a nice day": "goodbye",
    "Bye!": "goodbye",
    "Hello!": "greeting",
    "good morning": "greeting",
    "hi, I have a question": "greeting",
    "hello, can you help me?": "greeting",
    "good morning, I need some help": "greeting",
    "is anyone there?": "greeting",
    "talk to a human": "human",
    "/reset": "reset",
}

QUESTIONS = [
    "thanks, where is my parcel?",
    "ok how do I return an item",
    "ok so is it free?",
    "hello, I have a question about shipping",
    "hi, where is my parcel?",
    "I need help with my order",
    "can you help me with returns?",
    "can I pay later",
    "is there a shop in berlin",
    "no I want a refund",
    "no",
    "is it good?",
    "that's all?",
    "is that all the colours you have?",
    "thank you for nothing",
    "nothing",
    "thank you for nothing, my order never arrived and nobody answers my emails",
    "",
]


@pytest.mark.parametrize("text", sorted(COURTESIES))
def test_courtesies_are_recognised(text: str) -> None:
    assert intent(text) == COURTESIES[text]


@pytest.mark.parametrize("text", QUESTIONS)
def test_questions_are_left_to_the_faq(text: str) -> None:
    assert intent(text) is None
