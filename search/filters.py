"""Filters of a panel or a search: department, doctor, ask-date range and source.

Each shard turns them into one boolean mask over its rows (`Filters.mask`), which candidate
search applies inside every signal (BM25 scores of other rows zeroed, FAISS searching allowed
rows only), so a filter matching 1% of the index still fills the panel from that 1%. A filter
that matches nothing gives an empty panel. Department and doctor match case and white space
folded ("Dr." before a doctor's name is optional); since and until are ISO dates, inclusive,
and a consultation without an ask date is left out by either; source is the file a
consultation was read from, by its path as indexed or its file name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from datetime import date

import numpy as np

from index.consultation import normalize_space
from index.errors import SimqaError

_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}$")
NAMES = ("department", "doctor", "since", "until", "source")


class FilterError(SimqaError):
    """A filter value that is not valid: names the parameter."""

    def __init__(self, parameter: str, message: str) -> None:
        self.parameter = parameter
        super().__init__(f"{parameter}: {message}")


def iso_date(parameter: str, value: str | date) -> str:
    """A filter date as YYYY-MM-DD; FilterError naming the parameter if it is not an ISO date."""
    if isinstance(value, date):
        return value.isoformat()
    try:
        if not _ISO.match(value):
            raise ValueError
        return date.fromisoformat(value).isoformat()
    except (TypeError, ValueError):
        raise FilterError(parameter, f"{value!r} is not an ISO date (YYYY-MM-DD)") from None


def folded(text: str) -> str:
    return normalize_space(text).casefold()


def doctor_name(text: str) -> str:
    """A doctor as filters compare them: "Dr. Gao Chunde" and "gao  chunde" alike."""
    return re.sub(r"^dr\.?\s+", "", folded(text))


@dataclass(frozen=True)
class Filters:
    """What a panel is restricted to; None fields do not filter."""

    department: str | None = None
    doctor: str | None = None
    since: str | date | None = None
    until: str | date | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        for name in ("since", "until"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, iso_date(name, getattr(self, name)))
        for name in ("department", "doctor", "source"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                raise FilterError(name, f"expected text, got {type(getattr(self, name)).__name__}")

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) is not None for f in fields(self))


@dataclass
class FilterColumns:
    """A shard's rows as filters see them, folded once when the shard opens."""

    departments: np.ndarray
    doctors: np.ndarray
    ask_dates: np.ndarray
    source_files: np.ndarray
    source_names: np.ndarray

    @classmethod
    def of(cls, departments: list[str], doctors: list[str], ask_dates: list[str], source_files: list[str]) -> "FilterColumns":
        return cls(np.array([folded(d) for d in departments]), np.array([doctor_name(d) for d in doctors]),
                   np.array(ask_dates), np.array(source_files), np.array([f.replace("\\", "/").rsplit("/", 1)[-1] for f in source_files]))

    def mask(self, filters: Filters | None) -> np.ndarray | None:
        """Rows the filters allow (None: no filter, every row)."""
        if not filters:
            return None
        allowed = np.ones(len(self.departments), dtype=bool)
        if filters.department is not None:
            allowed &= self.departments == folded(filters.department)
        if filters.doctor is not None:
            allowed &= self.doctors == doctor_name(filters.doctor)
        if filters.since is not None:
            allowed &= (self.ask_dates != "") & (self.ask_dates >= filters.since)
        if filters.until is not None:
            allowed &= (self.ask_dates != "") & (self.ask_dates <= filters.until)
        if filters.source is not None:
            allowed &= (self.source_files == filters.source) | (self.source_names == filters.source)
        return allowed
