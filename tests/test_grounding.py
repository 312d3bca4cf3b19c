from bot.grounding import supported_prefix, unsupported_facts, word_support

FAQ = (
    "How can I contact customer service?\n"
    "Write to help@shop.example or call +49 30 1234 5678 Monday to Friday from 8:00 to 18:00."
)


def test_a_faithful_reply_is_kept_whole() -> None:
    reply = (
        "Call +49 30 1234 5678 Monday to Friday from 8:00 to 18:00. Or write to help@shop.example."
    )
    assert supported_prefix(reply, FAQ) == reply


def test_a_reply_is_cut_at_the_first_invented_fact() -> None:
    reply = "Call customer service Monday to Friday. Our number is 111-111-1111."
    assert supported_prefix(reply, FAQ) == "Call customer service Monday to Friday."
    assert unsupported_facts("Our number is 111-111-1111.", FAQ) == {"111-111-1111"}


def test_a_reply_of_invented_claims_is_rejected() -> None:
    reply = "Yes, we sell bicycles with wheelsets and tires in our Berlin warehouse."
    assert word_support(reply, FAQ) < 0.5
    assert supported_prefix(reply, FAQ, question="do you sell bicycles?") == ""


def test_an_empty_pleasantry_says_nothing_checkable() -> None:
    assert supported_prefix("Yes, you can. I'd be happy to help!", FAQ) == ""


def test_facts_from_the_question_count_as_known() -> None:
    reply = "Customer service about order 4711: call Monday to Friday from 8:00 to 18:00."
    assert supported_prefix(reply, FAQ, question="what about order 4711?") == reply
    assert supported_prefix(reply, FAQ) == ""


def test_a_repeated_faq_question_is_no_answer() -> None:
    """The model may answer with an entry's question; only what answers stays."""
    asked = [
        "An item is missing from my parcel. What should I do?",
        "How can I contact customer service?",
    ]
    faq = f"{asked[0]}\nCheck whether the parcel was split into two deliveries.\n{FAQ}"
    assert supported_prefix(asked[0], faq, faq_questions=asked) == ""
    reply = "how can I contact customer service? Call Monday to Friday from 8:00 to 18:00."
    kept = supported_prefix(reply, faq, faq_questions=asked)
    assert kept == "Call Monday to Friday from 8:00 to 18:00."
    assert supported_prefix(reply, faq) == reply  # without the questions, nothing tells
