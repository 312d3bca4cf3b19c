"""A 30-second version of `make bench-load`: 50 simulated customers against a real server.
Latency is reported by the benchmark, not asserted; here nothing may fail or be lost."""

from collections.abc import Iterator

import pytest

from tests.bench.bench_load import MIX, SERVER_ENV, run_load
from tests.server import Server


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {**SERVER_ENV, "ANSWERDESK_MAX_NEW_TOKENS": "32", "ANSWERDESK_MODEL_MAX_WAITING": "2"}
    running = Server(tmp_path_factory.mktemp("load"), extra_env=env).start()
    yield running
    running.stop()


@pytest.mark.serial
async def test_50_customers_for_30_seconds_lose_nothing(loaded: Server) -> None:
    result = await run_load(loaded.url, users=50, seconds=30)
    for line in result.lines("tests/test_load.py", 50, 100):
        print(line)
    assert result.errors == {}
    assert result.lost_turns == 0
    assert all(len(result.latencies.get(kind, [])) > 0 for kind in MIX)
    assert sum(result.accepted.values()) > 500
