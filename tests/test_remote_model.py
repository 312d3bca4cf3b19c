"""`RemoteModel` against a real local HTTP server speaking the OpenAI streaming format.

The server (FastAPI under uvicorn, in a thread) behaves by the requested model name, the way a
vLLM server serves each LoRA adapter under its own name, and records every request it received.
"""

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from engine import EngineError, GenerationParams, ModelBusy, RemoteModel, generate

MESSAGES = [
    {"role": "system", "content": "You answer questions about Acme's shop."},
    {"role": "user", "content": "How long does shipping take?"},
]
PIECES = ["Hel", "lo", ", wor", "ld"]
SLOW_CHUNKS = 100  # the "slow" reply: one chunk every SLOW_GAP_S, 5 s in all
SLOW_GAP_S = 0.05
GREEDY = GenerationParams(max_new_tokens=32, temperature=0.0, repetition_penalty=1.0)


@dataclass
class Recorder:
    """What the fake server saw: request bodies and headers, and how far the slow reply got."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    slow_emitted: int = 0
    slow_ended: threading.Event = field(default_factory=threading.Event)

    def reset(self) -> None:
        self.requests.clear()
        self.headers.clear()
        self.slow_emitted = 0
        self.slow_ended.clear()


def sse(content: str | None, *, finish: str | None = None, role: str | None = None) -> str:
    delta: dict[str, str] = {}
    if role:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    chunk = {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "fake",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    return f"data: {json.dumps(chunk)}\n\n"


USAGE_CHUNK = "data: " + json.dumps(
    {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "fake",
        "choices": [],
        "usage": {"prompt_tokens": 20, "completion_tokens": 4, "total_tokens": 24},
    }
)
DONE = "data: [DONE]\n\n"


def error_body(message: str, kind: str, code: int) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def fake_openai_server(seen: Recorder) -> FastAPI:
    app = FastAPI()

    async def whole_reply() -> AsyncIterator[str]:
        yield sse("", role="assistant")  # vLLM opens with the role and empty content
        for piece in PIECES:
            yield sse(piece)
            await asyncio.sleep(0.01)
        yield sse(None, finish="stop")
        yield USAGE_CHUNK + "\n\n"
        yield DONE

    async def slow_reply() -> AsyncIterator[str]:
        try:
            for i in range(SLOW_CHUNKS):
                yield sse(f"word{i} ")
                seen.slow_emitted = i + 1
                await asyncio.sleep(SLOW_GAP_S)
            yield DONE
        finally:
            seen.slow_ended.set()

    async def stalled_reply(request: Request) -> AsyncIterator[str]:
        yield sse("Let me check")
        for _ in range(400):  # 20 s at most; the client hangs up long before
            if await request.is_disconnected():
                return
            await asyncio.sleep(0.05)

    async def midway_error() -> AsyncIterator[str]:
        yield sse("Partial")
        yield "data: " + json.dumps(error_body("out of KV cache blocks", "InternalError", 500))
        yield "\n\n"

    @app.post("/v1/chat/completions")
    async def completions(request: Request) -> Response:
        body = await request.json()
        seen.requests.append(body)
        seen.headers.append(dict(request.headers))
        model = body["model"]
        if model == "missing":
            message = f"The model `{model}` does not exist."
            return JSONResponse(error_body(message, "NotFoundError", 404), status_code=404)
        if model == "busy":
            return JSONResponse(
                error_body("Too many requests", "RateLimitError", 429),
                status_code=429,
                headers={"Retry-After": "7"},
            )
        if model == "overloaded":  # TGI's shape of error body, no Retry-After
            body = {"error": "Model is overloaded", "error_type": "overloaded"}
            return JSONResponse(body, status_code=503)
        if model == "broken":
            body = error_body("CUDA out of memory", "InternalServerError", 500)
            return JSONResponse(body, status_code=500)
        if model == "guarded" and request.headers.get("authorization") != "Bearer sesame":
            body = error_body("Invalid API key", "AuthenticationError", 401)
            return JSONResponse(body, status_code=401)
        if model == "hang":  # never answers; gives up once the client has gone
            for _ in range(400):
                if await request.is_disconnected():
                    break
                await asyncio.sleep(0.05)
            return Response(status_code=204)
        reply = {
            "slow": slow_reply,
            "stall": lambda: stalled_reply(request),
            "midway-error": midway_error,
        }.get(model, whole_reply)()
        return StreamingResponse(reply, media_type="text/event-stream")

    return app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerThread:
    """uvicorn serving `app` on 127.0.0.1 from a background thread."""

    app: FastAPI
    port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            http="h11",
            ws="none",
            lifespan="off",
            log_level="critical",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, delay_s: float = 0.0) -> None:
        if delay_s:
            self.thread = threading.Thread(target=self._run_later, args=(delay_s,), daemon=True)
        self.thread.start()

    def _run_later(self, delay_s: float) -> None:
        time.sleep(delay_s)
        self.server.run()

    def wait_started(self, timeout_s: float = 10) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            assert time.monotonic() < deadline, "the fake model server did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture(scope="module")
def server_url(recorder: Recorder) -> Iterator[str]:
    server = ServerThread(fake_openai_server(recorder))
    server.start()
    server.wait_started()
    yield server.url
    server.stop()


@pytest.fixture
def seen(recorder: Recorder) -> Recorder:
    recorder.reset()
    return recorder


@pytest.fixture
async def remote() -> AsyncIterator[Callable[..., RemoteModel]]:
    """Builds `RemoteModel`s and closes them all at the end of the test."""
    made: list[RemoteModel] = []

    def make(*args: Any, **kwargs: Any) -> RemoteModel:
        made.append(RemoteModel(*args, **kwargs))
        return made[-1]

    yield make
    for model in made:
        await model.close()


async def test_chunks_arrive_in_order_and_generate_joins_them(
    server_url: str, seen: Recorder, remote: Callable[..., RemoteModel]
) -> None:
    model = remote(server_url, model="smollm2")
    chunks = [chunk async for chunk in model.stream(MESSAGES, GREEDY)]
    # The role-only opening, the finish chunk and the usage chunk carry no text: nothing for them.
    assert chunks == PIECES
    assert await generate(model, MESSAGES, GREEDY) == "Hello, world"
    assert len(seen.requests) == 2
    assert seen.requests[0]["messages"] == MESSAGES
    assert seen.requests[0]["stream"] is True


async def test_request_carries_the_adapter_as_model_and_the_sampling_params(
    server_url: str, seen: Recorder, remote: Callable[..., RemoteModel]
) -> None:
    model = remote(server_url, model="smollm2")
    params = GenerationParams(
        max_new_tokens=42,
        temperature=0.3,
        top_p=0.9,
        repetition_penalty=1.2,
        seed=7,
        stop=("\nUser:", "###"),
        adapter="acme-support",
    )
    assert await generate(model, MESSAGES, params) == "Hello, world"
    body = seen.requests[-1]
    assert body["model"] == "acme-support"
    assert body["max_tokens"] == 42
    assert body["temperature"] == 0.3
    assert body["top_p"] == 0.9
    assert body["seed"] == 7
    assert body["stop"] == ["\nUser:", "###"]
    assert body["repetition_penalty"] == 1.2


async def test_without_an_adapter_the_configured_model_is_asked_and_defaults_are_left_out(
    server_url: str, seen: Recorder, remote: Callable[..., RemoteModel]
) -> None:
    model = remote(server_url, model="smollm2")
    await generate(model, MESSAGES, GREEDY)
    body = seen.requests[-1]
    assert body["model"] == "smollm2"
    assert body["max_tokens"] == 32
    assert body["temperature"] == 0.0
    # No stop strings, no seed, a neutral repetition penalty: servers apply their own defaults.
    assert "stop" not in body
    assert "seed" not in body
    assert "repetition_penalty" not in body


async def test_a_reader_that_stops_early_makes_the_server_stop_generating(
    server_url: str, seen: Recorder, remote: Callable[..., RemoteModel]
) -> None:
    model = remote(server_url)
    started = time.monotonic()
    stream = model.stream(MESSAGES, GenerationParams(adapter="slow"))
    assert isinstance(stream, AsyncGenerator)
    assert await anext(stream) == "word0 "
    # Streamed as generated: the first words come long before the whole (5 s) reply exists.
    assert time.monotonic() - started < SLOW_CHUNKS * SLOW_GAP_S / 2
    assert await anext(stream) == "word1 "
    await stream.aclose()  # the customer went away

    ended = await asyncio.to_thread(seen.slow_ended.wait, 2)
    assert ended, "the server kept generating"
    assert seen.slow_emitted < SLOW_CHUNKS // 2


async def test_connection_refused_names_the_url_and_the_setting_quickly(
    remote: Callable[..., RemoteModel],
) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    model = remote(url, connect_retries=1, timeout_s=2)
    started = time.monotonic()
    with pytest.raises(EngineError) as caught:
        await generate(model, MESSAGES, GREEDY)
    assert time.monotonic() - started < 3
    message = str(caught.value)
    assert url in message
    assert "ANSWERDESK_MODEL_URL" in message
    assert "tried 2 times" in message


async def test_a_server_that_comes_up_during_the_connect_retries_is_reached(
    remote: Callable[..., RemoteModel],
) -> None:
    seen_late = Recorder()
    late = ServerThread(fake_openai_server(seen_late))
    late.start(delay_s=0.3)  # a model server restarting: refused at first
    try:
        # httpcore waits 0, 0.5, 1 and 2 s between connection attempts.
        model = remote(late.url, connect_retries=4)
        assert await generate(model, MESSAGES, GREEDY) == "Hello, world"
        assert len(seen_late.requests) == 1
    finally:
        late.stop()


async def test_a_server_that_never_answers_times_out_once(
    server_url: str, seen: Recorder, remote: Callable[..., RemoteModel]
) -> None:
    model = remote(server_url, timeout_s=0.5)
    started = time.monotonic()
    with pytest.raises(EngineError) as caught:
        await generate(model, MESSAGES, GenerationParams(adapter="hang"))
    elapsed = time.monotonic() - started
    assert "did not answer within 0.5 s" in str(caught.value)
    assert server_url.removesuffix("/v1") in str(caught.value)
    assert 0.4 < elapsed < 2
    # Not sent again: a stuck server is not handed the same generation three times.
    assert [body["model"] for body in seen.requests] == ["hang"]


async def test_a_reply_that_stalls_midway_times_out_after_the_first_words(
    server_url: str, seen: Recorder, remote: Callable[..., RemoteModel]
) -> None:
    model = remote(server_url, timeout_s=0.5)
    received: list[str] = []
    with pytest.raises(EngineError, match=r"stopped sending the reply for 0\.5 s"):
        async for chunk in model.stream(MESSAGES, GenerationParams(adapter="stall")):
            received.append(chunk)
    assert received == ["Let me check"]


async def test_an_unknown_model_names_the_adapter_the_server_lacks(
    server_url: str, seen: Recorder, remote: Callable[..., RemoteModel]
) -> None:
    model = remote(server_url)
    with pytest.raises(EngineError) as caught:
        await generate(model, MESSAGES, GenerationParams(adapter="missing"))
    assert not isinstance(caught.value, ModelBusy)
    message = str(caught.value)
    assert "no model named 'missing'" in message
    assert "The model `missing` does not exist." in message  # the server's own words


async def test_rate_limited_is_model_busy_with_the_servers_retry_after(
    server_url: str, seen: Recorder, remote: Callable[..., RemoteModel]
) -> None:
    model = remote(server_url)
    started = time.monotonic()
    with pytest.raises(ModelBusy) as caught:
        await generate(model, MESSAGES, GenerationParams(adapter="busy"))
    assert caught.value.retry_after_s == 7
    assert "retry in 7 s" in str(caught.value)
    # Reported at once, not waited out: the manager decides what the customer sees meanwhile.
    assert time.monotonic() - started < 2
    assert len(seen.requests) == 1


async def test_overloaded_without_retry_after_is_model_busy_for_five_seconds(
    server_url: str, seen: Recorder, remote: Callable[..., RemoteModel]
) -> None:
    model = remote(server_url)
    with pytest.raises(ModelBusy) as caught:
        await generate(model, MESSAGES, GenerationParams(adapter="overloaded"))
    assert caught.value.retry_after_s == 5
    assert "HTTP 503" in str(caught.value)
    assert len(seen.requests) == 1


async def test_a_wrong_api_key_points_at_the_setting_and_a_right_one_is_sent(
    server_url: str, seen: Recorder, remote: Callable[..., RemoteModel]
) -> None:
    params = GenerationParams(adapter="guarded")
    with pytest.raises(EngineError) as caught:
        await generate(remote(server_url, api_key="wrong"), MESSAGES, params)
    assert "ANSWERDESK_MODEL_API_KEY" in str(caught.value)
    assert "HTTP 401" in str(caught.value)

    assert await generate(remote(server_url, api_key="sesame"), MESSAGES, params) == "Hello, world"
    assert seen.headers[-1]["authorization"] == "Bearer sesame"


async def test_the_openai_key_from_the_environment_is_never_sent(
    server_url: str, seen: Recorder, remote: Callable[..., RemoteModel], monkeypatch: Any
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-customer-openai-key")
    await generate(remote(server_url), MESSAGES, GREEDY)
    assert "sk-customer-openai-key" not in json.dumps(seen.headers[-1])


async def test_other_server_errors_carry_the_servers_message_and_are_not_retried(
    server_url: str, seen: Recorder, remote: Callable[..., RemoteModel]
) -> None:
    model = remote(server_url)
    with pytest.raises(EngineError, match="HTTP 500: CUDA out of memory"):
        await generate(model, MESSAGES, GenerationParams(adapter="broken"))
    assert len(seen.requests) == 1

    received: list[str] = []
    with pytest.raises(EngineError, match="out of KV cache blocks"):
        async for chunk in model.stream(MESSAGES, GenerationParams(adapter="midway-error")):
            received.append(chunk)
    assert received == ["Partial"]


def test_a_url_without_a_scheme_is_refused_with_the_setting_named() -> None:
    with pytest.raises(EngineError, match="ANSWERDESK_MODEL_URL"):
        RemoteModel("127.0.0.1:8000/v1")
