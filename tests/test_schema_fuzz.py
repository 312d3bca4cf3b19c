"""Schemathesis generates requests from the app's own OpenAPI schema for every route: none may
get a 5xx or a response that does not match the schema."""

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server import Server

TOKEN = "fuzz-token"


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {
        "ANSWERDESK_ADMIN_TOKEN": TOKEN,
        "ANSWERDESK_RATE_LIMIT": "100000/minute",
        "ANSWERDESK_MAX_NEW_TOKENS": "8",
    }
    running = Server(tmp_path_factory.mktemp("fuzz"), extra_env=env).start()
    yield running
    running.stop()


def test_a_thousand_generated_requests_get_no_5xx_and_match_the_schema(
    fuzzed: Server, tmp_path: Path
) -> None:
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "schemathesis"),
            "run",
            f"{fuzzed.url}/openapi.json",
            "--checks",
            "not_a_server_error,response_schema_conformance",
            # A Server-Sent Events stream stays open by design; it has its own tests.
            "--exclude-path",
            "/api/chat/{session_id}/events",
            "--header",
            f"Authorization: Bearer {TOKEN}",
            "--max-examples",
            "60",
            "--request-timeout",
            "60",
            "--seed",
            "20261123",
            "--phases",
            "examples,coverage,fuzzing",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,  # schemathesis keeps a cache in its working directory
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    generated = int(re.search(r"(\d+) generated", output).group(1))  # type: ignore[union-attr]
    assert generated >= 1000, output[-2000:]
