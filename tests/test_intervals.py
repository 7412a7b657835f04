from datetime import date, datetime

import pytest

from partman.intervals import Interval, Span, add_months


def test_weekly_boundaries_fall_on_iso_mondays():
    assert Interval.WEEKLY.floor(date(2026, 11, 29)) == date(2026, 11, 23)  # a Sunday
    assert Interval.WEEKLY.floor(date(2026, 11, 23)) == date(2026, 11, 23)
    assert Interval.WEEKLY.next(date(2026, 12, 28)) == date(2027, 1, 4)


def test_quarters_start_in_january_april_july_october():
    starts = {Interval.QUARTERLY.floor(date(2027, m, 15)) for m in range(1, 13)}
    assert starts == {date(2027, 1, 1), date(2027, 4, 1), date(2027, 7, 1), date(2027, 10, 1)}
    assert Interval.QUARTERLY.next(date(2027, 10, 1)) == date(2028, 1, 1)


def test_ceil_leaves_a_boundary_where_it_is():
    assert Interval.MONTHLY.ceil(date(2027, 3, 1)) == date(2027, 3, 1)
    assert Interval.MONTHLY.ceil(date(2027, 3, 2)) == date(2027, 4, 1)


def test_month_arithmetic_clamps_to_the_last_day():
    assert add_months(date(2027, 1, 31), 1) == date(2027, 2, 28)
    assert add_months(date(2028, 1, 31), 1) == date(2028, 2, 29)
    assert add_months(date(2027, 3, 31), -13) == date(2026, 2, 28)


def test_labels_name_the_slot():
    assert Interval.QUARTERLY.label(date(2027, 4, 1)) == "2027_q2"
    assert Interval.WEEKLY.label(date(2027, 1, 4)) == "2027_w01"
    assert Interval.DAILY.label(date(2027, 1, 4)) == "2027_01_04"


@pytest.mark.parametrize(
    "text, span",
    [("18 months", Span(18, "months")), ("1 year", Span(1, "years")), ("90 days", Span(90, "days")),
     ("2 quarters", Span(6, "months")), (" 3 Weeks ", Span(3, "weeks")), ("0 days", Span(0, "days"))],
)
def test_spans_parse_from_spec_text(text, span):
    assert Span.parse(text) == span


@pytest.mark.parametrize("text", ["18", "months", "1.5 months", "-3 days", "3 fortnights"])
def test_malformed_spans_are_refused(text):
    with pytest.raises(ValueError):
        Span.parse(text)


def test_span_subtraction_is_calendar_wise():
    assert Span(24, "months").add(datetime(2027, 2, 28, 10), sign=-1) == datetime(2025, 2, 28, 10)
    assert Span(1, "years").add(datetime(2028, 2, 29), sign=1) == datetime(2029, 2, 28)
