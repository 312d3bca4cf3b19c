"""Prometheus metrics of one answerdesk process (prometheus-client, a registry per app)."""

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    """Implements the conversation core's `bot.Observer` and times HTTP requests."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "answerdesk_http_requests", "HTTP requests", ["route", "method", "status"], registry=r
        )
        self.request_seconds = Histogram(
            "answerdesk_http_request_seconds",
            "HTTP request time",
            ["route"],
            buckets=LATENCY,
            registry=r,
        )
        self.replies = Counter("answerdesk_replies", "Replies by answer mode", ["mode"], registry=r)
        self.reply_seconds = Histogram(
            "answerdesk_reply_seconds",
            "Time to the final reply",
            ["mode"],
            buckets=LATENCY,
            registry=r,
        )
        self.retrieval_seconds = Histogram(
            "answerdesk_retrieval_seconds", "FAQ retrieval time", buckets=LATENCY, registry=r
        )
        self.generated_chunks = Counter(
            "answerdesk_generated_chunks",
            "Text chunks (about one token each) generated",
            registry=r,
        )
        self.fallbacks = Counter(
            "answerdesk_fallbacks", "Questions the FAQ did not answer", registry=r
        )
        self.handoffs = Counter(
            "answerdesk_handoffs", "Conversations handed to a human", registry=r
        )
        self.team_chat_posts = Counter(
            "answerdesk_team_chat_posts",
            "Messages to the operators' Telegram group (adapters/telegram_team.py), sent or failed",
            ["result"],
            registry=r,
        )
        self.handoff_notifications = Counter(
            "answerdesk_handoff_notifications",
            "Notifications of the team (webhook, e-mail), sent or failed (after every retry)",
            ["result"],
            registry=r,
        )
        self.follow_up_emails = Counter(
            "answerdesk_follow_up_emails",
            "E-mails of operator messages web customers did not see, sent or failed (retried)",
            ["result"],
            registry=r,
        )
        self.telegram_retries = Counter(
            "answerdesk_telegram_retry_after", "Telegram 429 answers waited out", registry=r
        )
        self.model_queue = Gauge(
            "answerdesk_model_queue", "Requests waiting for or using the model", registry=r
        )

    def watch_model(self, model: Any) -> None:
        """Report `model`'s queue and, for a local model, the prompt tokens it ran and reused."""
        self.model_queue.set_function(lambda: model.pending)
        if hasattr(model, "decode_stats"):
            self.registry.register(_PromptTokens(lambda: model.decode_stats))

    # bot.Observer
    def retrieval(self, seconds: float) -> None:
        self.retrieval_seconds.observe(seconds)

    def reply(self, mode: str, seconds: float, chunks: int) -> None:
        self.replies.labels(mode).inc()
        self.reply_seconds.labels(mode).observe(seconds)
        self.generated_chunks.inc(chunks)
        if mode == "fallback":
            self.fallbacks.inc()

    def handoff(self) -> None:
        self.handoffs.inc()

    def handoff_notified(self, result: str) -> None:
        self.handoff_notifications.labels(result).inc()

    def follow_up_emailed(self, result: str) -> None:
        self.follow_up_emails.labels(result).inc()

    def team_chat_posted(self, result: str) -> None:
        self.team_chat_posts.labels(result).inc()

    def exposition(self) -> Response:
        return Response(generate_latest(self.registry), media_type="text/plain; version=0.0.4")

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """Times each HTTP request, its whole response included (a stream to its end), and
        counts it by route, method and status. Plain ASGI: starlette's BaseHTTPMiddleware costs
        a task group and a wrapped response per request."""

        async def timed(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            started = time.perf_counter()
            status = 500

            async def noted(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await app(scope, receive, noted)
            finally:
                # The router records the matched route in the scope: label by its path template
                # (/api/chat/{session_id}/history), so labels stay few.
                route = str(getattr(scope.get("route"), "path", "unmatched"))
                self.requests.labels(route, scope["method"], str(status)).inc()
                self.request_seconds.labels(route).observe(time.perf_counter() - started)

        return timed


class _PromptTokens(Collector):
    """Prompt tokens of the local model's requests: run, or reused from a recent prompt that
    began the same way (engine.prompt_cache)."""

    def __init__(self, stats: Callable[[], Any]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[CounterMetricFamily]:
        stats = self._stats()
        family = CounterMetricFamily(
            "answerdesk_prompt_tokens",
            "Prompt tokens run by the model, or reused from a recent prompt that began alike",
            labels=["source"],
        )
        family.add_metric(["run"], stats.prompt_tokens - stats.prompt_tokens_reused)
        family.add_metric(["reused"], stats.prompt_tokens_reused)
        yield family
