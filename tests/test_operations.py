"""Operating answerdesk: readiness, Prometheus metrics, JSON logs with request ids."""

import json

import httpx

from tests.server import Server


def test_readiness_and_metrics(server: Server) -> None:
    assert httpx.get(f"{server.url}/readyz", timeout=30).json()["status"] == "ready"
    server.chat("ops-1", "how do I reset my password?")
    server.chat("ops-1", "what is the capital of France?")
    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    samples = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert samples['answerdesk_replies_total{mode="faq"}'] >= 1
    assert samples['answerdesk_replies_total{mode="fallback"}'] >= 1
    assert samples["answerdesk_fallbacks_total"] >= 1
    assert (
        samples['answerdesk_http_requests_total{method="POST",route="/api/chat",status="200"}'] >= 2
    )
    assert samples["answerdesk_retrieval_seconds_count"] >= 2
    assert samples['answerdesk_reply_seconds_count{mode="faq"}'] >= 1
    assert "answerdesk_model_queue 0.0" in text


def test_a_second_customer_asking_the_same_thing_reuses_the_first_prompt(server: Server) -> None:
    """The model's second prompt repeats the first but for nothing: instructions, FAQ entries and
    question; /metrics shows it ran only its last token."""

    def prompt_tokens() -> dict[str, float]:
        text = httpx.get(f"{server.url}/metrics", timeout=30).text
        prefix = 'answerdesk_prompt_tokens_total{source="'
        return {
            line[len(prefix) :].split('"')[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(prefix)
        }

    before = prompt_tokens()
    assert server.chat("ops-3", "is there a shop in berlin")["mode"] == "grounded"
    first = prompt_tokens()
    assert server.chat("ops-4", "is there a shop in berlin")["mode"] == "grounded"
    second = prompt_tokens()
    assert first["run"] - before["run"] > 100  # the first prompt was run whole
    assert second["run"] - first["run"] == 1
    assert second["reused"] - first["reused"] == first["run"] - before["run"] - 1


def test_logs_are_json_lines_with_the_request_id(server: Server) -> None:
    r = httpx.post(
        f"{server.url}/api/chat",
        json={"session_id": "ops-2", "message": "how do I reset my password?"},
        headers={"x-request-id": "req-1234"},
        timeout=30,
    )
    assert r.headers["x-request-id"] == "req-1234"
    lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    mine = [line for line in lines if line.get("request_id") == "req-1234"]
    assert mine and all({"asctime", "level", "name", "message"} <= set(line) for line in mine)
    assert not any("reset my password" in line["message"] for line in lines)  # no texts logged
