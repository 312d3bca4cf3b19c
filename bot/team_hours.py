"""When the operators' team works: opening hours in OpenStreetMap's `opening_hours` syntax
("Mo-Fr 09:00-17:00; Sa 10:00-14:00; PH off"), evaluated by the `opening-hours-py` library in
the team's time zone, with the public holidays of its country when one is given."""

import re
from datetime import datetime
from zoneinfo import ZoneInfo

import opening_hours
from opening_hours import OpeningHours

from bot.errors import ConversationError

EXAMPLE = "Mo-Fr 09:00-17:00; PH off"
# The library's type stub leaves out its exceptions (opening-hours-py 2.1.4).
ParserError: type[Exception] = opening_hours.ParserError  # type: ignore[attr-defined]
UnknownCountryError: type[Exception] = opening_hours.UnknownCountryError  # type: ignore[attr-defined]


class BadOpeningHours(ConversationError, ValueError):
    """The opening hours or their country cannot be read; the message says what is wrong."""


class TeamHours:
    def __init__(self, expression: str, time_zone: ZoneInfo, country: str = "") -> None:
        """`country`: an ISO 3166 code such as DE, whose public holidays `PH` means."""
        try:
            self._hours = OpeningHours(
                expression,
                timezone=time_zone,
                country=country.upper() or None,
                max_interval_days=366,  # no opening within a year: none known
            )
        except ParserError as exc:
            at = re.search(r"--> \d+:(\d+)", str(exc))
            raise BadOpeningHours(
                f"not in OpenStreetMap's opening_hours syntax (such as {EXAMPLE!r})"
                + (f"; it cannot be read from character {at.group(1)} on" if at else "")
            ) from exc
        except UnknownCountryError as exc:
            raise BadOpeningHours(
                f"unknown country {country!r}; use an ISO 3166 code such as DE"
            ) from exc
        self._zone = time_zone

    def is_open(self, now: datetime) -> bool:
        """Whether the team works at `now` (hours marked unknown count as working)."""
        return not self._hours.is_closed(now.astimezone(self._zone))

    def back(self, now: datetime) -> str:
        """When the team is back, as a customer reads it ("tomorrow at 09:00 (Europe/Berlin
        time)"); "" while it works, or when no opening lies within a year."""
        if self.is_open(now):
            return ""
        now = now.astimezone(self._zone)  # the library reads zones by their IANA key
        opens = self._hours.next_change(now)
        if opens is None:
            return ""
        opens = opens.astimezone(self._zone)
        days = (opens.date() - now.date()).days
        if days == 0:
            day = "today"
        elif days == 1:
            day = "tomorrow"
        elif days < 7:
            day = f"on {opens:%A}"
        else:
            day = f"on {opens:%A} {opens.day} {opens:%B}"
        zone = "UTC" if str(self._zone) == "UTC" else f"{self._zone} time"
        return f"{day} at {opens:%H:%M} ({zone})"


def hours_from(expression: str, time_zone: ZoneInfo, country: str = "") -> TeamHours | None:
    """The team's hours; None when `expression` is empty (always working, as far as the
    assistant tells customers)."""
    return TeamHours(expression, time_zone, country) if expression.strip() else None
