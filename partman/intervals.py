"""Calendar arithmetic on local dates: the partition grid (Interval) and spec durations (Span)."""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import Enum


def add_months(d: date, months: int) -> date:
    """Calendar month arithmetic; a day past the end of the target month clamps to its last day."""
    index = d.year * 12 + (d.month - 1) + months
    year, month0 = divmod(index, 12)
    day = min(d.day, calendar.monthrange(year, month0 + 1)[1])
    return d.replace(year=year, month=month0 + 1, day=day)


class Interval(str, Enum):
    """The width of one partition; every boundary falls on a local midnight."""

    DAILY = "daily"
    WEEKLY = "weekly"  # ISO weeks: boundaries on Mondays
    MONTHLY = "monthly"
    QUARTERLY = "quarterly"  # Jan, Apr, Jul, Oct
    YEARLY = "yearly"

    def floor(self, d: date) -> date:
        """The boundary at or before d."""
        if self is Interval.DAILY:
            return d
        if self is Interval.WEEKLY:
            return d - timedelta(days=d.weekday())
        if self is Interval.MONTHLY:
            return d.replace(day=1)
        if self is Interval.QUARTERLY:
            return date(d.year, 3 * ((d.month - 1) // 3) + 1, 1)
        return date(d.year, 1, 1)

    def next(self, boundary: date) -> date:
        """The boundary after an aligned boundary."""
        if self is Interval.DAILY:
            return boundary + timedelta(days=1)
        if self is Interval.WEEKLY:
            return boundary + timedelta(days=7)
        return add_months(boundary, self.months)

    def ceil(self, d: date) -> date:
        """The boundary at or after d."""
        f = self.floor(d)
        return f if f == d else self.next(f)

    def is_boundary(self, d: date) -> bool:
        return self.floor(d) == d

    @property
    def months(self) -> int:
        """Months per partition, for the month-based intervals the SQL face speaks (1, 3, 12)."""
        return {Interval.MONTHLY: 1, Interval.QUARTERLY: 3, Interval.YEARLY: 12}[self]

    def label(self, boundary: date) -> str:
        """The cosmetic name suffix of the partition starting at an aligned boundary."""
        if self is Interval.DAILY:
            return boundary.strftime("%Y_%m_%d")
        if self is Interval.WEEKLY:
            iso = boundary.isocalendar()
            return f"{iso.year}_w{iso.week:02d}"
        if self is Interval.MONTHLY:
            return boundary.strftime("%Y_%m")
        if self is Interval.QUARTERLY:
            return f"{boundary.year}_q{(boundary.month - 1) // 3 + 1}"
        return f"{boundary.year}"


_SPAN = re.compile(r"^\s*(\d+)\s*(day|week|month|quarter|year)s?\s*$", re.IGNORECASE)
# The longest span of each unit, about a century: enough for any premake or retention, and far from the
# year 9999 where date arithmetic overflows (a plan for '99999 years' crashed with OverflowError).
SPAN_LIMITS = {"days": 36_600, "weeks": 5_300, "months": 1_200, "quarters": 400, "years": 100}
_LIMITS_TEXT = ", ".join(f"{n} {unit}" for unit, n in reversed(SPAN_LIMITS.items()))


@dataclass(frozen=True, order=True)
class Span:
    """A calendar duration from a spec: '18 months', '90 days', '1 year'; at most SPAN_LIMITS of its unit."""

    amount: int
    unit: str  # days | weeks | months | years

    @classmethod
    def parse(cls, text: str) -> "Span":
        m = _SPAN.match(str(text))
        if not m:
            raise ValueError(f"not a duration: {_quoted(text)} (expected e.g. '18 months', '90 days', '1 year')")
        digits, unit = m.group(1).lstrip("0") or "0", m.group(2).lower() + "s"
        # the digit count first: int() of a 10,000-digit string is itself an error
        if len(digits) > 6 or int(digits) > SPAN_LIMITS[unit]:
            raise ValueError(f"{_quoted(text)} is longer than partman allows (at most {_LIMITS_TEXT})")
        if unit == "quarters":
            return cls(int(digits) * 3, "months")
        return cls(int(digits), unit)

    def add(self, moment: datetime, sign: int = 1) -> datetime:
        """Shift a local wall-clock moment by this span, calendar-wise."""
        n = sign * self.amount
        if self.unit == "days":
            return moment + timedelta(days=n)
        if self.unit == "weeks":
            return moment + timedelta(weeks=n)
        months = n * 12 if self.unit == "years" else n
        shifted = add_months(moment.date(), months)
        return datetime.combine(shifted, moment.time())

    def __str__(self) -> str:
        unit = self.unit if self.amount != 1 else self.unit[:-1]
        return f"{self.amount} {unit}"


def _quoted(text: object) -> str:
    """The text as an error quotes it: cut, so that a megabyte of digits is not echoed back."""
    text = str(text)
    return repr(text if len(text) <= 60 else text[:60] + "…")
