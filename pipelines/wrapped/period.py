"""The stretch of days a Wrapped covers: a calendar year or any inclusive range of dates."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from pipelines.errors import ConfigError


@dataclass(frozen=True)
class Period:
    """Days `start` to `end`, both included, as calendar dates in the marts' reporting time zone."""

    start: date
    end: date

    def __post_init__(self) -> None:
        if self.start > self.end:
            raise ConfigError(f"--from {self.start} is after --to {self.end}")

    @classmethod
    def year(cls, year: int) -> Period:
        if not 1900 <= year <= 9999:
            raise ConfigError(f"--year {year} is not a plausible year")
        return cls(date(year, 1, 1), date(year, 12, 31))

    @property
    def is_calendar_year(self) -> bool:
        return (self.start.month, self.start.day, self.end.month, self.end.day) == (1, 1, 12, 31) and (
            self.start.year == self.end.year
        )

    @property
    def label(self) -> str:
        """The period in words: "2026" for a calendar year, else "2026-03-01 to 2026-05-31"."""
        return str(self.start.year) if self.is_calendar_year else f"{self.start} to {self.end}"

    @property
    def slug(self) -> str:
        """A folder name: "2026" or "2026-03-01_2026-05-31"."""
        return str(self.start.year) if self.is_calendar_year else f"{self.start}_{self.end}"

    def months(self) -> list[date]:
        """The first day of every month the period touches, in order."""
        months = []
        month = self.start.replace(day=1)
        while month <= self.end:
            months.append(month)
            month = date(month.year + month.month // 12, month.month % 12 + 1, 1)
        return months


def _day(text: str | None, option: str) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{option} {text!r} is not a date; use YYYY-MM-DD") from None


def resolve(year: int | None, start_text: str | None, end_text: str | None, today: date) -> Period:
    """The period the command line asks for: `--year`, or `--from` and `--to` (YYYY-MM-DD), or else this year."""
    start, end = _day(start_text, "--from"), _day(end_text, "--to")
    if year is not None and (start or end):
        raise ConfigError("give either --year or --from/--to, not both")
    if year is not None:
        return Period.year(year)
    if start and end:
        return Period(start, end)
    if start or end:
        raise ConfigError("--from and --to go together: give both dates (YYYY-MM-DD)")
    return Period.year(today.year)
