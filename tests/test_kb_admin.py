"""Operators keep the FAQ current while it runs: /admin/kb over real HTTP on two `answerdesk serve`
workers sharing one Redis, and the `answerdesk kb` commands against the same knowledge base."""

import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from knowledge import FORMATS, format_entries, read_entries, sample_faq_path
from tests.server import Server, drop_prefix

TOKEN = "kb-operator-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BIN = Path(sys.executable).parent / "answerdesk"
SAMPLE = read_entries(sample_faq_path())


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[list[Server]]:
    env = {
        "ANSWERDESK_REDIS_URL": redis_url,
        "ANSWERDESK_REDIS_PREFIX": f"adtest-kb-{uuid.uuid4().hex[:8]}",
        "ANSWERDESK_ADMIN_TOKEN": TOKEN,
        "ANSWERDESK_RATE_LIMIT": "100000/minute",
    }
    root = tmp_path_factory.mktemp("kb")
    a = Server(root / "a", extra_env=env)
    b = Server(root / "b", extra_env=env)
    for server in (a, b):
        server.data_dir.mkdir()
    running = [a.start(), b.start()]
    yield running
    for server in running:
        server.stop()
    drop_prefix(redis_url, env["ANSWERDESK_REDIS_PREFIX"])


def api(server: Server, method: str, path: str, **kwargs: object) -> httpx.Response:
    return httpx.request(method, f"{server.url}/admin/kb{path}", headers=AUTH, timeout=60, **kwargs)  # type: ignore[arg-type]


def cli(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **server.env()}
    return subprocess.run(
        [str(BIN), "kb", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_an_entry_is_created_edited_reverted_and_removed(workers: list[Server]) -> None:
    a, _ = workers
    new = {"question": "Do you sell zebra-striped umbrellas?", "answer": "Yes, from 10 euros."}
    created = api(a, "POST", "/entries", json={**new, "alt_questions": ["striped umbrella?"]})
    assert created.status_code == 201, created.text
    entry_id = created.json()["id"]
    assert created.json()["version"] == 1
    assert api(a, "POST", "/entries", json={**new, "id": entry_id}).status_code == 409

    added = a.cli("operators", "add", "Ines")  # an operator with her own token changes it
    ines = {"authorization": f"Bearer {added.stdout.split('token of Ines: ')[1].split()[0]}"}
    changed = httpx.put(
        f"{a.url}/admin/kb/entries/{entry_id}",
        json={**new, "answer": "Yes, from 5 euros."},
        headers={**ines, "x-operator-name": "Someone%20Else"},  # her token says who she is
        timeout=60,
    )
    assert changed.status_code == 200 and changed.json()["version"] == 2
    assert changed.json()["by"] == "Ines"
    # With the admin token, the name of who is at the keyboard (percent-encoded UTF-8).
    zoe = {**AUTH, "x-operator-name": "Zo%C3%AB"}
    deleted = httpx.delete(f"{a.url}/admin/kb/entries/{entry_id}", headers=zoe, timeout=60)
    assert deleted.status_code == 204
    assert api(a, "GET", f"/entries/{entry_id}").status_code == 404

    history = api(a, "GET", f"/entries/{entry_id}/history").json()
    assert [(v["version"], v["deleted"], v["by"]) for v in history] == [
        (1, False, "admin token"),
        (2, False, "Ines"),
        (3, True, "Zoë (admin token)"),
    ]
    back = api(a, "POST", f"/entries/{entry_id}/revert", json={"version": 1})
    assert back.status_code == 200 and back.json()["answer"] == "Yes, from 10 euros."
    assert back.json()["version"] == 4
    bad = api(a, "POST", f"/entries/{entry_id}/revert", json={"version": 3})
    assert bad.status_code == 422 and "deletion" in bad.json()["error"]

    page = api(a, "GET", "/entries", params={"contains": "zebra"}).json()
    assert [e["id"] for e in page["items"]] == [entry_id] and page["total"] == 1
    first = api(a, "GET", "/entries", params={"limit": 5, "offset": 0}).json()
    assert len(first["items"]) == 5 and first["total"] == len(SAMPLE) + 1
    assert api(a, "DELETE", f"/entries/{entry_id}").status_code == 204


def test_an_edit_on_one_worker_answers_on_the_other_within_a_second(
    workers: list[Server],
) -> None:
    a, b = workers
    question = "Can I bring my dog into the Berlin store?"
    answer = "Dogs on a lead are welcome in all our stores."
    created = api(a, "POST", "/entries", json={"question": question, "answer": answer})
    assert created.status_code == 201
    started = time.monotonic()
    while True:
        hits = api(b, "GET", "/search", params={"q": question, "k": 1}).json()["hits"]
        if hits and hits[0]["entry"]["id"] == created.json()["id"]:
            break
        assert time.monotonic() - started < 1.0, hits
    reply = b.chat("dog-2", question)
    assert (reply["mode"], reply["reply"]) == ("faq", answer)
    api(a, "DELETE", f"/entries/{created.json()['id']}")


def test_imports_are_atomic_and_every_format_round_trips(workers: list[Server]) -> None:
    a, _ = workers
    before = api(a, "GET", "/export", params={"format": "jsonl"}).text
    bad = "\n".join(json.dumps(e.to_dict()) for e in SAMPLE[:3]) + '\n{"id": "x"}\n'
    refused = api(a, "POST", "/import", params={"format": "jsonl"}, content=bad)
    assert refused.status_code == 422
    assert refused.json()["error"] == "upload:4: field 'question' is required and must be a string"
    assert api(a, "GET", "/export", params={"format": "jsonl"}).text == before

    for fmt in FORMATS:
        exported = api(a, "GET", "/export", params={"format": fmt})
        assert exported.status_code == 200
        assert exported.text == format_entries(sorted(SAMPLE, key=lambda e: e.id), fmt)
        again = api(
            a, "POST", "/import", params={"format": fmt, "dry_run": True}, content=exported.text
        )
        assert again.json()["unchanged"] == len(SAMPLE), (fmt, again.text)

    csv = "question,answer,alt_questions\nDo you repair bikes?,Yes: bring it in.,fix my bike\n"
    done = api(a, "POST", "/import", params={"format": "csv"}, content=csv).json()
    assert (done["added"], done["unchanged"], done["dry_run"]) == (1, 0, False)
    assert done["calibration"]["version"] == done["version"]  # thresholds follow every import
    hits = api(a, "GET", "/search", params={"q": "can you fix my bicycle?"}).json()
    assert hits["hits"][0]["entry"]["question"] == "Do you repair bikes?"
    assert hits["answer_threshold"] == done["calibration"]["answer"]
    assert set(hits["hits"][0]["scores"]) == {"phrasing", "centroid", "answer", "lexical"}
    api(a, "DELETE", f"/entries/{hits['hits'][0]['entry']['id']}")


def test_the_kb_commands_work_on_the_same_knowledge_base(
    workers: list[Server], tmp_path: Path
) -> None:
    a, b = workers
    faq = tmp_path / "extra.md"
    faq.write_text(
        "# Extra\n\n## Do you deliver on Sundays?\nid: sundays\n\nNo, Monday to Saturday.\n"
    )
    done = cli(a, "import", str(faq))
    assert done.returncode == 0, done.stderr
    assert "1 added" in done.stdout and "thresholds: answer at" in done.stdout
    assert "sundays" in cli(a, "list").stdout
    assert json.loads(cli(a, "show", "sundays").stdout)["answer"] == "No, Monday to Saturday."
    assert b.chat("sun", "do you deliver on sundays?")["reply"] == "No, Monday to Saturday."

    edited = cli(a, "edit", "sundays", "--answer", "Yes, in Berlin only.")
    assert edited.returncode == 0 and json.loads(edited.stdout)["version"] == 2
    versions = cli(a, "history", "sundays").stdout.splitlines()
    when = r"\d{4}-\d\d-\d\d \d\d:\d\d"
    assert re.fullmatch(rf"v2\t{when}\tcommand line\tDo you deliver on Sundays\?", versions[1])
    assert cli(a, "revert", "sundays", "1").returncode == 0
    search = cli(a, "search", "sunday delivery")
    assert search.returncode == 0 and "sundays" in search.stdout.splitlines()[1]
    assert "lexical=" in search.stdout

    broken = tmp_path / "broken.csv"
    broken.write_text('question,answer\nWhy?,Because.\n"Unclosed,quote\n')
    failed = cli(a, "import", str(broken))
    assert failed.returncode != 0 and "broken.csv:3" in failed.stderr
    assert "Why?" not in cli(a, "list").stdout

    out = tmp_path / "all.csv"
    assert cli(a, "export", str(out)).returncode == 0
    assert "sundays" in {e.id for e in read_entries(out)}
    assert cli(a, "rm", "sundays").returncode == 0
    assert cli(a, "show", "sundays").returncode != 0
