"""Time arithmetic of the domain: ISO 8601 durations and "when is this due".

Every due time (promises, reminders, escalation steps) is computed by ``due_after`` so
that business calendars (opening hours, holidays, time zones) can later change the
answer in one place.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Protocol

_DURATION = re.compile(
    r"^P(?!$)(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)


class Calendar(Protocol):
    """Working time of a team (planned): adds working durations to instants."""

    def add(self, start: datetime, duration: timedelta) -> datetime:
        """The instant ``duration`` of working time after ``start``."""
        ...


def parse_duration(text: str) -> timedelta:
    """Parse an ISO 8601 duration without years or months (e.g. PT1H, P1DT2H30M, P2W).

    Raises ValueError with a readable message.
    """
    match = _DURATION.match(text.strip().upper()) if text else None
    if match is None:
        raise ValueError(f"not an ISO 8601 duration like PT1H or P1DT30M: {text!r}")
    parts = {name: float(value) for name, value in match.groupdict().items() if value}
    return timedelta(
        weeks=parts.get("weeks", 0),
        days=parts.get("days", 0),
        hours=parts.get("hours", 0),
        minutes=parts.get("minutes", 0),
        seconds=parts.get("seconds", 0),
    )


def due_after(start: datetime, duration: timedelta, calendar: Calendar | None = None) -> datetime:
    """When something is due ``duration`` after ``start`` (wall-clock time without a calendar)."""
    if calendar is not None:
        return calendar.add(start, duration)
    return start + duration
