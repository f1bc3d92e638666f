"""Business hours: a weekly schedule in a named time zone, with holidays.
Shared by the IVR (`hours` steps) and the center file (a service's hours,
which limit the callbacks it promises).

Pure: `Schedule.is_open(at)` and `next_open(at)` read no clock; the caller
passes the instant.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, field_validator
from pydantic_core import PydanticCustomError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _minutes(text: str) -> int:
    hours, sep, minutes = text.partition(":")
    if not sep or len(minutes) != 2 or not hours.isdigit() or not minutes.isdigit():
        raise ValueError(f"bad time {text!r}: expected HH:MM")
    value = int(hours) * 60 + int(minutes)
    if int(minutes) > 59 or value > 24 * 60:
        raise ValueError(f"bad time {text!r}: outside 00:00-24:00")
    return value


def _opening(value: Any) -> tuple[int, int]:
    """"08:30-18:00" -> (510, 1080), minutes since local midnight; the end
    is exclusive and may be 24:00. A range over midnight is two ranges."""
    if isinstance(value, tuple):
        return value  # already parsed (model_copy, model_validate of a model)
    if not isinstance(value, str):
        raise ValueError(f"bad opening {value!r}: expected a string like '08:00-18:00'")
    start_text, sep, end_text = value.strip().partition("-")
    if not sep:
        raise ValueError(f"bad opening {value!r}: expected 'HH:MM-HH:MM'")
    start, end = _minutes(start_text.strip()), _minutes(end_text.strip())
    if end <= start:
        raise ValueError(
            f"bad opening {value!r}: the end must come after the start "
            "(split a range over midnight in two)"
        )
    return start, end


Opening = Annotated[tuple[int, int], BeforeValidator(_opening)]


def _days(key: str) -> tuple[str, ...]:
    """'mon', or a range such as 'mon-fri' (in week order)."""
    first, sep, last = key.strip().lower().partition("-")
    if first not in DAYS or (sep and last not in DAYS):
        raise ValueError(f"bad day {key!r}: use mon..sun or a range like mon-fri")
    if not sep:
        return (first,)
    start, end = DAYS.index(first), DAYS.index(last)
    if end < start:
        raise ValueError(f"bad day range {key!r}: {first} comes after {last}")
    return DAYS[start : end + 1]


def _day_key(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"bad day {value!r}: use mon..sun or a range like mon-fri")
    _days(value)
    return value


def _openings(value: Any) -> Any:
    # A single range may be written without a list.
    return [value] if isinstance(value, str) else value


DayKey = Annotated[str, BeforeValidator(_day_key)]
Openings = Annotated[tuple[Opening, ...], BeforeValidator(_openings)]


class Schedule(BaseModel):
    """When a service is open.

    ```yaml
    timezone: Europe/Paris
    weekly: {mon-fri: ["08:00-12:30", "13:30-18:00"], sat: "09:00-12:00"}
    holidays: [2026-12-25, 2027-01-01]
    ```
    Days not listed are closed; a holiday is closed all day (local date).
    Keys stay as written (errors point at them); `is_open` reads the
    expanded week.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    timezone: str
    weekly: dict[DayKey, Openings] = Field(min_length=1)
    holidays: frozenset[date] = frozenset()

    _week: dict[str, tuple[tuple[int, int], ...]] = PrivateAttr(default_factory=dict)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("weekly")
    @classmethod
    def _each_day_once(cls, value: dict[str, tuple[tuple[int, int], ...]]) -> Any:
        seen: dict[str, str] = {}
        for key in value:
            for day in _days(key):
                if day in seen:
                    raise PydanticCustomError(
                        "day_twice", f"{day} is in both {seen[day]!r} and {key!r}", {"key": key})
                seen[day] = key
        return value

    def model_post_init(self, context: Any, /) -> None:
        for key, openings in self.weekly.items():
            for day in _days(key):
                self._week[day] = openings

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def is_open(self, at: datetime) -> bool:
        """Whether `at` (timezone-aware) falls in an opening, local time."""
        if at.tzinfo is None:
            raise ValueError("is_open needs a timezone-aware datetime")
        local = at.astimezone(self.zone)
        if local.date() in self.holidays:
            return False
        minute = local.hour * 60 + local.minute
        openings = self._week.get(DAYS[local.weekday()], ())
        return any(start <= minute < end for start, end in openings)

    def next_open(self, at: datetime, *, within_days: int = 400) -> datetime | None:
        """The first instant at or after `at` (timezone-aware) when the
        service is open, in UTC: `at` itself when open now. None when
        nothing opens within `within_days` local days."""
        if at.tzinfo is None:
            raise ValueError("next_open needs a timezone-aware datetime")
        # Compared in UTC: two datetimes of one zone compare by wall time,
        # which is wrong across a DST change.
        now = at.astimezone(UTC)
        zone = self.zone
        day = now.astimezone(zone).date()
        for offset in range(within_days + 1):
            local = day + timedelta(days=offset)
            if local in self.holidays:
                continue
            for start, end in sorted(self._week.get(DAYS[local.weekday()], ())):
                opens, closes = _instant(local, start, zone), _instant(local, end, zone)
                first = max(opens, now)
                # The is_open check: wall times in the hour skipped when the
                # clocks go forward have no instant of their own.
                if first < closes and self.is_open(first):
                    return first
        return None


def _instant(day: date, minute: int, zone: ZoneInfo) -> datetime:
    """Local wall time `minute` of `day` in UTC (24:00: the next midnight)."""
    if minute >= 24 * 60:
        day, minute = day + timedelta(days=1), 0
    local = datetime(day.year, day.month, day.day, minute // 60, minute % 60, tzinfo=zone)
    return local.astimezone(UTC)
