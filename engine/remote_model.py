"""`RemoteModel`: the `ChatModel` contract over an OpenAI-compatible chat-completions server
(vLLM, TGI, another answerdesk), streamed, through the maintained `openai` SDK.

Retries: the SDK's own `max_retries` also retries timeouts, 408/409/429 and every 5xx, sleeping
up to the server's Retry-After (two minutes) each time. A hung server would then be asked three
times before the customer hears anything, and a busy one would be waited on instead of reported.
So the SDK's retries are off and only connection attempts are retried, by the HTTP transport
(httpcore's `retries`, which covers connect errors and connect timeouts, nothing else).
"""

import email.utils
import math
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, cast

import httpx2
import openai
from openai.types.chat import ChatCompletionMessageParam

from engine.chat_model import ChatMessage, GenerationParams
from engine.errors import EngineError, RemoteBusy

DEFAULT_RETRY_AFTER_S = 5  # when a busy server does not say how long to wait
CONNECT_TIMEOUT_S = 5.0  # the SDK's default; a smaller `timeout_s` lowers it
NO_API_KEY = "EMPTY"  # vLLM's convention for a server without keys (never OPENAI_API_KEY)


class RemoteModel:
    """Generates on an OpenAI-compatible server at `base_url` (e.g. http://127.0.0.1:8000/v1).

    A request's `params.adapter` becomes the request's `model` (vLLM serves each LoRA adapter
    under its own model name); without one, `model` is asked for. `timeout_s` bounds the wait
    for the server's answer and every gap between chunks; a connection is tried
    `1 + connect_retries` times."""

    def __init__(
        self,
        base_url: str,
        model: str = "default",
        api_key: str | None = None,
        timeout_s: float = 60,
        connect_retries: int = 2,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise EngineError(
                f"The model server URL {base_url!r} must start with http:// or https://, "
                "e.g. http://127.0.0.1:8000/v1; check ANSWERDESK_MODEL_URL."
            )
        if not timeout_s > 0:
            raise EngineError(f"The model server timeout must be positive, not {timeout_s}.")
        if connect_retries < 0:
            raise EngineError(f"connect_retries must be 0 or more, not {connect_retries}.")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeout_s = timeout_s
        self.connect_retries = connect_retries
        self.name = f"{model}@{self.base_url}"
        self.pending = 0  # replies being streamed from the server
        timeout = openai.Timeout(timeout_s, connect=min(timeout_s, CONNECT_TIMEOUT_S))
        transport = httpx2.AsyncHTTPTransport(
            retries=connect_retries, limits=openai.DEFAULT_CONNECTION_LIMITS
        )
        self._client = openai.AsyncOpenAI(
            base_url=self.base_url,
            api_key=api_key or NO_API_KEY,
            timeout=timeout,
            max_retries=0,
            http_client=openai.DefaultAsyncHttpx2Client(timeout=timeout, transport=transport),
        )

    async def stream(
        self, messages: Sequence[ChatMessage], params: GenerationParams
    ) -> AsyncIterator[str]:
        model = self.model if params.adapter in (None, "base") else params.adapter
        stop = list(params.stop)
        started = False
        self.pending += 1
        try:
            chunks = await self._client.chat.completions.create(
                model=model,
                messages=_wire(messages),
                stream=True,
                max_tokens=params.max_new_tokens,
                temperature=params.temperature,
                top_p=params.top_p,
                seed=openai.omit if params.seed is None else params.seed,
                stop=stop or openai.omit,
                extra_body=(
                    None
                    if params.repetition_penalty == 1.0
                    else {"repetition_penalty": params.repetition_penalty}
                ),
            )
            started = True
            # Leaving this block early (the reader called aclose: the customer went away) closes
            # the HTTP response, so the server sees the disconnect and stops generating.
            async with chunks:
                async for chunk in chunks:
                    if chunk.choices and (text := chunk.choices[0].delta.content):
                        yield text
        except openai.OpenAIError as exc:
            raise self._error(exc, model, started) from exc
        finally:
            self.pending -= 1

    async def close(self) -> None:
        await self._client.close()

    def _error(self, exc: openai.OpenAIError, model: str, started: bool) -> EngineError:
        where = f"The model server at {self.base_url}"
        if isinstance(exc, openai.APITimeoutError) and not isinstance(
            exc.__cause__, httpx2.ConnectTimeout
        ):
            waited = "stopped sending the reply for" if started else "did not answer within"
            return EngineError(
                f"{where} {waited} {self.timeout_s:g} s; check that it is not overloaded or "
                "stuck, or allow it more time."
            )
        if isinstance(exc, openai.APIConnectionError):
            reason = f" ({exc.__cause__})" if exc.__cause__ and str(exc.__cause__) else ""
            if started:
                return EngineError(f"{where} broke off the reply{reason}; check its logs.")
            tries = 1 + self.connect_retries
            return EngineError(
                f"Cannot connect to the model server at {self.base_url}{reason}, tried {tries} "
                f"time{'s' if tries > 1 else ''}. Check ANSWERDESK_MODEL_URL and that the server "
                "is running."
            )
        if isinstance(exc, openai.APIStatusError):
            status, detail = exc.status_code, _server_message(exc)
            if status in (401, 403):
                return EngineError(
                    f"{where} refused the API key (HTTP {status}: {detail}); "
                    "check ANSWERDESK_MODEL_API_KEY."
                )
            if status == 404:
                return EngineError(
                    f"{where} has no model named {model!r} (HTTP 404: {detail}). Check the "
                    "adapter / model name against the models the server serves, and that the URL "
                    "includes the API prefix, e.g. http://127.0.0.1:8000/v1."
                )
            if status in (429, 503):
                return RemoteBusy(self.base_url, status, _retry_after_s(exc.response.headers))
            return EngineError(f"{where} answered HTTP {status}: {detail}")
        if isinstance(exc, openai.APIError):
            return EngineError(f"{where} reported an error: {exc.message}")
        return EngineError(f"{where} could not be used: {exc}")


def _wire(messages: Sequence[ChatMessage]) -> list[ChatCompletionMessageParam]:
    # The SDK types each role as its own TypedDict; answerdesk's roles are plain strings.
    wire = [{"role": m["role"], "content": m["content"]} for m in messages]
    return cast(list[ChatCompletionMessageParam], wire)


def _server_message(exc: openai.APIStatusError) -> str:
    """The server's own words: OpenAI/vLLM `{"error": {"message"}}`, TGI `{"error": "..."}`."""
    body: Any = exc.body
    if isinstance(body, Mapping) and isinstance(body.get("message"), str):
        body = body["message"]
    text = body if isinstance(body, str) and body.strip() else exc.message
    return text.strip()[:500]


def _retry_after_s(headers: Mapping[str, str]) -> int:
    """Whole seconds from a Retry-After header (seconds or an HTTP date), else the default."""
    value = headers.get("retry-after")
    if not value:
        return DEFAULT_RETRY_AFTER_S
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return DEFAULT_RETRY_AFTER_S
    if not math.isfinite(seconds):
        return DEFAULT_RETRY_AFTER_S
    return max(1, math.ceil(seconds))
