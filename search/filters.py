"""Filters of a panel or a search: department, doctor, ask-date range and source.

Each shard turns them into one boolean mask over its rows (`Filters.mask`, over the columns the
build wrote: index/filter_columns.py), which candidate search applies inside every signal (BM25
scores of other rows zeroed, FAISS searching allowed rows only), so a filter matching 1% of the
index still fills the panel from that 1%. A filter that matches nothing gives an empty panel.
Department and doctor match case and white space folded ("Dr." before a doctor's name is
optional); since and until are ISO dates, inclusive, and a consultation without an ask date is
left out by either; source is the file a consultation was read from, by its path as indexed or
its file name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from datetime import date

import numpy as np

from index.errors import SimqaError
from index.filter_columns import FilterColumns

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

    def mask(self, columns: FilterColumns) -> np.ndarray:
        """The rows of these columns that the filters allow."""
        return columns.allowed(**{f.name: getattr(self, f.name) for f in fields(self)})
