"""The operators' hours: what a customer is told outside them, and reminders that wait for
them (real Redis; the library reads OpenStreetMap's opening_hours syntax)."""

import asyncio
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from redis.asyncio import Redis

from adapters.handoff_webhook import notification, remind
from bot import (
    BadOpeningHours,
    HandoffDesk,
    Inbound,
    SessionInfo,
    SessionKeys,
    SessionStore,
    TeamHours,
    Turn,
    Waiting,
)

BERLIN = ZoneInfo("Europe/Berlin")
WEEKDAYS = "Mo-Fr 09:00-17:00; PH off"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.mark.parametrize(
    ("now", "back"),
    [
        ("2026-12-08T10:30:00+01:00", ""),  # Tuesday morning: the team works
        ("2026-12-08T07:15:00+01:00", "today at 09:00 (Europe/Berlin time)"),
        ("2026-12-08T17:00:00+01:00", "tomorrow at 09:00 (Europe/Berlin time)"),
        ("2026-12-11T20:00:00+01:00", "on Monday at 09:00 (Europe/Berlin time)"),  # a Friday
        ("2026-12-11T19:30:00-05:00", "on Monday at 09:00 (Europe/Berlin time)"),  # New York
        # Christmas Eve evening: the 25th and 26th are German public holidays.
        ("2026-12-24T18:00:00+01:00", "on Monday at 09:00 (Europe/Berlin time)"),
    ],
)
def test_customers_are_told_when_the_team_is_back(now: str, back: str) -> None:
    assert TeamHours(WEEKDAYS, BERLIN, "de").back(at(now)) == back


def test_holidays_and_closures_count() -> None:
    christmas_eve = at("2026-12-24T18:00:00+01:00")
    # Without a country, PH means no day: Friday the 25th is a working day.
    no_holidays = TeamHours(WEEKDAYS, BERLIN)
    assert no_holidays.back(christmas_eve) == "tomorrow at 09:00 (Europe/Berlin time)"
    closed = TeamHours(f"{WEEKDAYS}; 2026 Dec 21-2027 Jan 03 off", BERLIN, "DE")
    assert closed.back(christmas_eve) == "on Monday 4 January at 09:00 (Europe/Berlin time)"
    assert not closed.is_open(at("2026-12-22T10:00:00+01:00"))
    assert TeamHours("24/7", ZoneInfo("UTC")).back(christmas_eve) == ""
    assert TeamHours("off", ZoneInfo("UTC")).back(christmas_eve) == ""  # no opening in sight


def test_hours_that_cannot_be_read_say_what_is_wrong() -> None:
    with pytest.raises(BadOpeningHours, match="cannot be read from character 3 on"):
        TeamHours("Mon-Fri 9-17", BERLIN)
    with pytest.raises(BadOpeningHours, match="unknown country 'XY'"):
        TeamHours(WEEKDAYS, BERLIN, "XY")


def test_the_team_chat_hears_what_the_customer_was_told() -> None:
    back = "tomorrow at 09:00 (Europe/Berlin time)"
    call = Waiting("3f2a91c0-aa", "web", 1, "customer asked for a human", False, back)
    posted = notification(call, None)
    assert posted["text"] == (
        "A customer in the web chat (conversation 3f2a91c0, as the operator desk shows it) is "
        "waiting for a person (customer asked for a human); they are next in line. It is outside "
        "the team's hours: they were told it is back tomorrow at 09:00 (Europe/Berlin time)."
    )
    assert posted["team_back"] == back


class Kept:
    def __init__(self) -> None:
        self.told: list[Waiting] = []

    def waiting(self, call: Waiting) -> None:
        self.told.append(call)

    def wrote(self, info: SessionInfo, said: Inbound) -> None:
        raise AssertionError("reminders do not carry what customers write")

    def changed(self, info: SessionInfo, note: str) -> None:
        raise AssertionError("reminders do not change who has a conversation")

    def noted(self, info: SessionInfo, note: Turn) -> None:
        raise AssertionError("reminders note nothing")

    def answered(self, info: SessionInfo, said: Turn, via: str) -> None:
        raise AssertionError("reminders write to no customer")

    def erased(self, session_id: str) -> None:
        raise AssertionError("reminders erase nothing")


async def test_reminders_wait_for_the_teams_hours(redis_client: Redis, prefix: str) -> None:
    """A customer who waited overnight is not reminded of at night, when no one reads the team
    chat, but once the team's day begins."""
    desk = HandoffDesk(SessionStore(redis_client, SessionKeys(prefix)))
    await desk.enqueue("overnight", time.time() - 3600)
    utc = ZoneInfo("UTC")
    later = (datetime.now(utc).hour + 12) % 24
    for expression, told in [(f"Mo-Su {later:02}:00-{later:02}:59", []), ("24/7", ["overnight"])]:
        kept = Kept()
        task = asyncio.create_task(remind(desk, [kept], 1.0, TeamHours(expression, utc)))
        await asyncio.sleep(0.5)  # five looks
        task.cancel()
        assert [call.session_id for call in kept.told] == told, expression
