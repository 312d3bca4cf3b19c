"""First-come-first-served turns within one worker process."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class SessionQueue:
    """One FIFO lock per session id, dropped when nobody holds or waits for it.

    asyncio.Lock wakes waiters in the order they started waiting, so messages of one session are
    answered in the order they arrived. (Across worker processes the Redis lock keeps turns from
    interleaving; their relative order there is the order they reach Redis.)
    """

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def turn(self, session_id: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(session_id, (asyncio.Lock(), 0))
        self._locks[session_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[session_id]
            if users == 1:
                del self._locks[session_id]
            else:
                self._locks[session_id] = (lock, users - 1)

    def waiting(self, session_id: str) -> int:
        """Messages of this session being answered or waiting in this process."""
        return self._locks.get(session_id, (None, 0))[1]
