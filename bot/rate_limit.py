"""Per-user message rate limits in Redis, with the `limits` library's moving window."""

import time

from limits import parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio import Redis
from redis.exceptions import RedisError

from bot.errors import ConversationError, StorageUnavailable


class RateLimited(ConversationError):
    """Too many messages; `retry_after_s` says when the next one will be taken."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(
            f"You are sending messages faster than I can answer; try again in {retry_after_s} s."
        )
        self.retry_after_s = retry_after_s


class RateLimiter:
    """`rate` is written like "20/minute" or "5 per 10 seconds" (limits' notation)."""

    def __init__(self, redis: Redis, rate: str, key_prefix: str) -> None:
        try:
            self._item = parse(rate)
        except ValueError as exc:
            raise ConversationError(
                f"Rate limit {rate!r} is not valid; write it like '20/minute'."
            ) from exc
        storage = RedisStorage(
            "async+redis://",
            implementation="redispy",
            connection_pool=redis.connection_pool,  # type: ignore[arg-type]  # limits passes it on
            key_prefix=key_prefix,
        )
        self._limiter = MovingWindowRateLimiter(storage)

    async def take(self, who: str) -> None:
        """Count one message from `who`, or raise RateLimited when over the limit."""
        try:
            if await self._limiter.hit(self._item, who):
                return
            stats = await self._limiter.get_window_stats(self._item, who)
        except RedisError as exc:
            raise StorageUnavailable(f"Cannot reach the rate limiter: {exc}") from exc
        raise RateLimited(max(1, round(stats.reset_time - time.time())))
