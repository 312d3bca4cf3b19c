"""End to end, as a new user runs it: `answerdesk serve` in a subprocess with no configuration
(its own bundled redis-server, the bundled model and FAQ), over real HTTP."""

import json
from pathlib import Path

import httpx
import pytest

from bot.grounding import unsupported_facts
from knowledge import FaqEntry, read_entries, sample_faq_path
from tests.server import Server

ANSWERS = {e.id: e for e in read_entries(sample_faq_path())}


def test_an_faq_question_gets_the_operators_answer(server: Server) -> None:
    body = server.chat("s1", "how do I reset my password?")
    assert body["mode"] == "faq"
    assert body["reply"] == ANSWERS["account-reset-password"].answer
    assert body["session_id"] == "s1"
    [source] = body["sources"]
    assert source["id"] == "account-reset-password"
    assert source["question"] == "How do I reset my password?"
    assert source["score"] > 0.8  # the same words as the FAQ question


def test_a_question_the_faq_does_not_cover_gets_i_dont_know(server: Server) -> None:
    body = server.chat("s2", "what is the capital of France?")
    assert body["mode"] == "fallback"
    assert "don't know" in body["reply"]
    assert body["sources"] == []


def test_an_in_between_question_is_answered_by_the_model_from_the_faq(server: Server) -> None:
    body = server.chat("s3", "is there a shop in berlin")
    assert body["mode"] == "grounded"
    ids = [s["id"] for s in body["sources"]]
    assert "store-location" in ids
    faq = "\n".join(f"{ANSWERS[i].question}\n{ANSWERS[i].answer}" for i in ids)
    assert "Kastanienallee 12" in body["reply"]  # the address, in the model's reply
    assert not body["reply"].startswith("I'm not completely sure")  # not the closest entry
    assert unsupported_facts(body["reply"], faq + "\nis there a shop in berlin") == set()


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        (
            {"session_id": "bad1", "message": "   "},
            "message: String should have at least 1 character",
        ),
        ({"session_id": "bad2", "message": "x" * 4001}, "the limit is 4000"),
        ({"session_id": "bad3"}, "message: Field required"),
        ({"message": "hello"}, "session_id: Field required"),
        ({"session_id": "no spaces allowed", "message": "hi"}, "session_id: String should match"),
        ({"session_id": "bad4", "message": 42}, "message: Input should be a valid string"),
        ("{not json", "JSON decode error"),
    ],
)
def test_bad_input_gets_a_4xx_that_says_what_is_wrong(
    server: Server, payload: object, problem: str
) -> None:
    body = payload if isinstance(payload, str) else json.dumps(payload)
    r = httpx.post(
        f"{server.url}/api/chat",
        content=body,
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert r.status_code == 422
    assert problem in r.json()["error"]
    session = payload.get("session_id") if isinstance(payload, dict) else None
    if session and " " not in session:
        history = httpx.get(f"{server.url}/api/chat/{session}/history", timeout=30).json()
        assert history["turns"] == []  # nothing half-written


def test_a_bad_setting_stops_the_command_and_names_it(tmp_path: Path) -> None:
    """A mistyped setting stops `answerdesk` at once with the variable and what is wrong with
    it, not a traceback, and without echoing its value (a webhook URL is a secret)."""
    bad = {
        "ANSWERDESK_HANDOFF_WEBHOOK_URL": "hooks.slack.com/services/T0/B0/s3cr3t",
        "ANSWERDESK_PORT": "eighty",
        "ANSWERDESK_TIME_ZONE": "Mars/Olympus_Mons",
        "ANSWERDESK_OPENING_HOURS": "Mon-Fri 9-17",
        "ANSWERDESK_TELEGRAM_TEAM_CHAT": "-1001234567890",  # but no bot token
    }
    for command in (["serve"], ["kb", "list"]):
        done = Server(tmp_path, extra_env=bad).cli(*command)
        assert done.returncode == 1, done.stderr
        assert done.stderr.strip() == (
            "Error: Bad setting: ANSWERDESK_TIME_ZONE: Value error, unknown time zone; use a "
            "name such as Europe/Berlin; ANSWERDESK_HANDOFF_WEBHOOK_URL: Input should be a valid "
            "URL, relative URL without a base; ANSWERDESK_OPENING_HOURS: Value error, not in "
            "OpenStreetMap's opening_hours syntax (such as 'Mo-Fr 09:00-17:00; PH off'); it "
            "cannot be read from character 3 on; ANSWERDESK_TELEGRAM_TEAM_CHAT: Value error, the "
            "operators' Telegram chat needs ANSWERDESK_TELEGRAM_TOKEN too; ANSWERDESK_PORT: Input "
            "should be a valid integer, unable to parse string as an integer."
        )


def test_the_demo_page_embeds_the_widget(server: Server) -> None:
    r = httpx.get(server.url + "/", timeout=30)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert '<script src="/widget.js" data-site-key="demo" async></script>' in r.text
    widget = httpx.get(server.url + "/widget.js", timeout=30)
    assert widget.headers["content-type"].startswith("text/javascript")
    assert "attachShadow" in widget.text and "/api/chat/stream" in widget.text


def test_an_operator_import_is_answered_without_a_restart(server: Server, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "question": "Q?", "answer": "A."}\n{"id": "y", "answer": "B."}\n')
    result = server.kb("import", str(bad))
    assert result.returncode != 0
    assert "bad.jsonl:2: field 'question' is required" in result.stderr
    assert server.chat("k1", "how do I reset my password?")["mode"] == "faq"  # unchanged

    own = tmp_path / "own.jsonl"
    entries = [
        *ANSWERS.values(),
        FaqEntry("dogs", "Are dogs allowed in the shop?", "Yes, well-behaved dogs are welcome."),
    ]
    own.write_text("\n".join(json.dumps(e.to_dict()) for e in entries) + "\n")
    result = server.kb("import", str(own))
    assert result.returncode == 0, result.stderr
    assert f"1 added, 0 updated, {len(entries) - 1} unchanged" in result.stdout
    body = server.chat("k1", "Are dogs allowed in the shop?")
    assert body["mode"] == "faq" and body["reply"] == "Yes, well-behaved dogs are welcome."


def test_history_survives_a_restart(server: Server) -> None:
    first = server.chat("restart", "how do I reset my password?")
    second = server.chat("restart", "What are your opening hours?")
    server.stop()
    server.start()
    r = httpx.get(f"{server.url}/api/chat/restart/history", timeout=30)
    assert r.status_code == 200
    turns = r.json()["turns"]
    assert [(t["role"], t["text"]) for t in turns] == [
        ("user", "how do I reset my password?"),
        ("assistant", first["reply"]),
        ("user", "What are your opening hours?"),
        ("assistant", second["reply"]),
    ]
    assert turns[1]["mode"] == "faq" and turns[1]["sources"][0]["id"] == "account-reset-password"
