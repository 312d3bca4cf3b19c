"""How the assistant is doing, day by day: what a business reads to see how many questions the
FAQ answers, how many customers needed a person and what they ask about most (`GET
/admin/stats`, `answerdesk stats`, the operator desk).

Counted per day (in the business's time zone) in Redis, so every worker adds to the same
figures: customers' messages by answer mode, customers put in line for a person, those an
operator took and how long they had waited, the 👍 and 👎 given to that day's replies, the FAQ
entries answers came from, the customers each operator took, and distinct conversations (a
HyperLogLog: no session id is kept). No customer's words are; the figures are kept `KEEP_DAYS`
days.
"""

import logging
import time
from collections import Counter
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from redis.exceptions import RedisError

from bot.errors import StorageUnavailable
from bot.messages import Reply
from bot.session_store import SessionStore

log = logging.getLogger(__name__)

KEEP_DAYS = 400  # a year's figures next to the same days of the year before


@dataclass(frozen=True)
class Figures:
    """One day's figures, or a range's (its conversations counted once however many days)."""

    conversations: int = 0  # distinct conversations with a message
    messages: int = 0  # customers' messages, every mode
    faq: int = 0  # answered with an FAQ entry's answer, word for word
    grounded: int = 0  # answered by the model from FAQ entries
    fallback: int = 0  # "I don't know", with FAQ questions to pick from or not
    suggested: int = 0  # of those, offered FAQ questions to pick from
    smalltalk: int = 0  # greetings, thanks, goodbyes, /reset
    handoff: int = 0  # messages asking for a person, or sent while waiting for or talking to one
    handoffs: int = 0  # customers put in line for a person
    taken: int = 0  # customers an operator took (on the day they were taken)
    waited_s: int = 0  # how long those had waited for the operator, summed (seconds)
    # Of those, the ones who asked while someone had the operator desk open, and their waits:
    # what a customer asking while the team is there may expect (`usual_wait`).
    taken_online: int = 0
    waited_online_s: int = 0
    thumbs_up: int = 0  # ratings of the replies of the day
    thumbs_down: int = 0
    operator_up: int = 0  # ratings of operators' help, by the day it ended
    operator_down: int = 0

    @property
    def answered(self) -> float | None:
        """The share of questions for the FAQ (modes faq, grounded, fallback) that were answered."""
        asked = self.faq + self.grounded + self.fallback
        return (self.faq + self.grounded) / asked if asked else None

    @property
    def average_wait_s(self) -> float | None:
        """How long a customer taken by an operator had waited for them, on average."""
        return self.waited_s / self.taken if self.taken else None

    def __add__(self, other: "Figures") -> "Figures":
        return Figures(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in _FIELDS})


_FIELDS = [f for f in fields(Figures) if f.name != "conversations"]


@dataclass(frozen=True)
class DayFigures:
    day: str  # YYYY-MM-DD, in the time zone of the figures
    figures: Figures
    entries: dict[str, int]  # FAQ entry id -> answers given from it
    operators: dict[str, int]  # operator -> customers they took


@dataclass(frozen=True)
class StatsReport:
    days: list[DayFigures]  # oldest first, every day of the range
    total: Figures
    entries: list[tuple[str, int]]  # FAQ entry ids by answers given from them, most first
    operators: list[tuple[str, int]]  # operators by customers they took, most first
    ratings: dict[str, tuple[int, int]]  # operator -> (👍, 👎) of customers they helped

    @property
    def operators_taken(self) -> dict[str, int]:
        return dict(self.operators)

    @property
    def operator_names(self) -> list[str]:
        """Those who took customers (most first), then those only rated (taken before)."""
        took = [o for o, _ in self.operators]
        return took + sorted(set(self.ratings) - set(took))


def day_of(ts: float, zone: tzinfo = UTC) -> str:
    return datetime.fromtimestamp(ts, zone).date().isoformat()


class ConversationStats:
    def __init__(self, sessions: SessionStore, zone: tzinfo = UTC) -> None:
        """`zone`: where a day begins and ends (the business's time zone)."""
        self.zone = zone
        self._usual: tuple[float, float | None] | None = None  # (when read, usual wait)
        self._keys = sessions.keys
        self._redis = sessions.redis

    def count(self, pipe: Any, session_id: str, reply: Reply, handed_over: bool = False) -> None:
        """Queue on `pipe` the counting of a customer's message and how it was answered."""
        day = day_of(time.time(), self.zone)
        counted, entries = self._keys.stats(day), self._keys.stats_entries(day)
        sessions = self._keys.stats_sessions(day)
        pipe.hincrby(counted, "messages", 1)
        pipe.hincrby(counted, reply.mode, 1)
        if reply.suggestions:
            pipe.hincrby(counted, "suggested", 1)
        if handed_over:
            pipe.hincrby(counted, "handoffs", 1)
        if reply.mode in ("faq", "grounded") and reply.sources:
            pipe.hincrby(entries, reply.sources[0].id, 1)
        pipe.pfadd(sessions, session_id)
        for key in (counted, entries, sessions):
            pipe.expire(key, KEEP_DAYS * 86400)

    async def rated(self, reply_ts: float, rating: str, previous: str, operator: str = "") -> None:
        """A reply of the day `reply_ts` was rated (`previous`: its rating before, or ""); with
        `operator`, the help of that operator, in a conversation that ended then."""
        if rating == previous:
            return
        day = day_of(reply_ts, self.zone)
        counted = self._keys.stats(day)
        field = "operator_{}" if operator else "thumbs_{}"
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hincrby(counted, field.format(rating), 1)
                if operator:
                    ratings = self._keys.stats_operator_ratings(day, rating)
                    pipe.hincrby(ratings, operator, 1)
                    pipe.expire(ratings, KEEP_DAYS * 86400)
                if previous:
                    pipe.hincrby(counted, field.format(previous), -1)
                    if operator:
                        pipe.hincrby(self._keys.stats_operator_ratings(day, previous), operator, -1)
                await pipe.execute()
        except RedisError as exc:
            log.warning("Could not count the rating in the figures: %s", exc)

    async def taken(self, operator: str, waited_s: float, online: bool = False) -> None:
        """An operator took a customer who had waited `waited_s` for a person (`online`: they
        asked while someone had the operator desk open)."""
        day = day_of(time.time(), self.zone)
        counted, operators = self._keys.stats(day), self._keys.stats_operators(day)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hincrby(counted, "taken", 1)
                pipe.hincrby(counted, "waited_s", max(0, round(waited_s)))
                if online:
                    pipe.hincrby(counted, "taken_online", 1)
                    pipe.hincrby(counted, "waited_online_s", max(0, round(waited_s)))
                pipe.hincrby(operators, operator, 1)
                for key in (counted, operators):
                    pipe.expire(key, KEEP_DAYS * 86400)
                await pipe.execute()
        except RedisError as exc:
            log.warning("Could not count the handoff in the figures: %s", exc)

    async def usual_wait(self, days: int = 7, least: int = 3) -> float | None:
        """How long customers who asked for a person while the team was there waited, on
        average over the last `days` days; None with fewer than `least` of them. Read at most
        once a minute."""
        now = time.monotonic()
        if self._usual is None or now - self._usual[0] > 60:
            total = (await self.report(days)).total
            usual = total.waited_online_s / total.taken_online if total.taken_online else None
            self._usual = (now, usual if total.taken_online >= least else None)
        return self._usual[1]

    async def report(self, days: int, until: float | None = None) -> StatsReport:
        """The last `days` days up to the day of `until` (default: today)."""
        last = datetime.fromtimestamp(time.time() if until is None else until, self.zone).date()
        dates = [(last - timedelta(days=n)).isoformat() for n in range(days - 1, -1, -1)]
        k = self._keys
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for day in dates:
                    pipe.hgetall(k.stats(day))
                    pipe.hgetall(k.stats_entries(day))
                    pipe.hgetall(k.stats_operators(day))
                    pipe.pfcount(k.stats_sessions(day))
                pipe.pfcount(*[k.stats_sessions(day) for day in dates])
                for day in dates:
                    pipe.hgetall(k.stats_operator_ratings(day, "up"))
                    pipe.hgetall(k.stats_operator_ratings(day, "down"))
                found = await pipe.execute()
        except RedisError as exc:
            raise StorageUnavailable(f"Cannot read the figures: {exc}") from exc
        report, total, used, took = [], Figures(), dict[str, int](), dict[str, int]()
        for n, day in enumerate(dates):
            counted, entries, operators, conversations = found[4 * n : 4 * n + 4]
            figures = Figures(
                conversations=int(conversations),
                **{f.name: int(counted.get(f.name.encode(), 0)) for f in _FIELDS},
            )
            per_entry = {e.decode(): int(c) for e, c in entries.items()}
            for entry, count in per_entry.items():
                used[entry] = used.get(entry, 0) + count
            per_operator = {o.decode(): int(c) for o, c in operators.items()}
            for operator, count in per_operator.items():
                took[operator] = took.get(operator, 0) + count
            report.append(DayFigures(day, figures, per_entry, per_operator))
            total += figures
        total = Figures(**{**asdict(total), "conversations": int(found[4 * len(dates)])})
        up, down = Counter[str](), Counter[str]()
        for n in range(len(dates)):
            ups, downs = found[4 * len(dates) + 1 + 2 * n : 4 * len(dates) + 3 + 2 * n]
            up.update({o.decode(): int(c) for o, c in ups.items()})
            down.update({o.decode(): int(c) for o, c in downs.items()})
        ratings = {o: (up[o], down[o]) for o in sorted(set(up) | set(down)) if up[o] or down[o]}
        return StatsReport(report, total, _ranked(used), _ranked(took), ratings)


def _ranked(counts: dict[str, int]) -> list[tuple[str, int]]:
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))
