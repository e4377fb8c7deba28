"""The rows as filters see them: department, doctor, ask date and source, written at build time.

Each text field is dictionary-encoded: its folded values, sorted and unique, in one .npy file
(UTF-8 bytes: a quarter of numpy's 4-byte characters), and a row's value as an int32 code into
them; the ask date is an int32 YYYYMMDD (0: unknown).
All are memory-mapped on open, so a filter costs the same from the first query on and opening
does not grow with the collection, and a filter compares integers, not strings. At 1M synthetic
rows (`python -m benchmarks.filters`, both in one run, AMD EPYC): ready in 1.2 ms against 6.2 s
to read the store's columns and fold them into numpy strings (as shards held them before), 58 MB
mapped against 301 MB in memory, a mask in 0.6-1.5 ms against 13-32 ms; the build spends 7.7 s
encoding them.

A filter's value is folded as the stored values were (`folded`, `doctor_name`) and looked up by
binary search; a value no row has matches nothing, so the panel is empty, not an error.
Generations written before these files (no FILTERS directory) are encoded from the store's
columns when first filtered, as before.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from index.consultation import normalize_space

FILTERS = "filters"  # the directory of a generation (or a shard's generation) that holds them
TEXT_FIELDS = ("department", "doctor", "source_file", "source_name")
CODES = "codes.npy"  # int32, one row per text field then the ask dates, one column per consultation


def folded(text: str) -> str:
    """A department (or any filter text) as filters compare them: white space and case folded."""
    return normalize_space(text).casefold()


def doctor_name(text: str) -> str:
    """A doctor as filters compare them: "Dr. Gao Chunde" and "gao  chunde" alike."""
    return re.sub(r"^dr\.?\s+", "", folded(text))


def source_name(source_file: str) -> str:
    """A source file's name without its directories ("/data/a/page.html" -> "page.html")."""
    return source_file.replace("\\", "/").rsplit("/", 1)[-1]


def date_number(iso: str) -> int:
    """An ISO date as the int32 YYYYMMDD it is stored as; 0 for "" (no ask date)."""
    return int(iso.replace("-", "")) if iso else 0


@dataclass
class FilterColumns:
    """Per text field its sorted values and each row's code into them; each row's ask date."""

    values: dict[str, np.ndarray]
    codes: np.ndarray  # (len(TEXT_FIELDS) + 1, rows) int32: codes of each text field, then ask dates

    @classmethod
    def encode(cls, departments: list[str], doctors: list[str], ask_dates: list[str], source_files: list[str]) -> "FilterColumns":
        """The columns of these rows' fields as a store holds them (ask dates ISO or "")."""
        texts = {"department": [folded(d) for d in departments], "doctor": [doctor_name(d) for d in doctors],
                 "source_file": list(source_files), "source_name": [source_name(f) for f in source_files]}
        codes = np.zeros((len(TEXT_FIELDS) + 1, len(departments)), dtype=np.int32)
        values = {}
        for at, name in enumerate(TEXT_FIELDS):
            values[name], codes[at] = np.unique(np.array([t.encode("utf-8") for t in texts[name]], dtype=bytes), return_inverse=True)
        codes[-1] = [date_number(d) for d in ask_dates]
        return cls(values, codes)

    def write(self, directory: Path) -> None:
        """Save into `directory` (created), one file per field's values and one of codes."""
        directory.mkdir()
        np.save(directory / CODES, self.codes, allow_pickle=False)
        for name, values in self.values.items():
            np.save(directory / f"{name}.npy", values, allow_pickle=False)

    @classmethod
    def open(cls, directory: Path) -> "FilterColumns":
        """Map saved columns; OSError or ValueError if a file is missing or unreadable."""
        return cls({name: np.load(directory / f"{name}.npy", mmap_mode="r") for name in TEXT_FIELDS},
                   np.load(directory / CODES, mmap_mode="r"))

    def __len__(self) -> int:
        return self.codes.shape[1]

    def allowed(self, department: str | None = None, doctor: str | None = None, since: str | None = None,
                until: str | None = None, source: str | None = None) -> np.ndarray:
        """The rows these values allow (None: that field does not filter); since and until are
        ISO dates, inclusive, and leave out rows without an ask date."""
        allowed = np.ones(len(self), dtype=bool)
        if department is not None:
            allowed &= self._equal("department", folded(department))
        if doctor is not None:
            allowed &= self._equal("doctor", doctor_name(doctor))
        dates = self.codes[-1]
        if since is not None:
            allowed &= (dates > 0) & (dates >= date_number(since))
        if until is not None:
            allowed &= (dates > 0) & (dates <= date_number(until))
        if source is not None:
            allowed &= self._equal("source_file", source) | self._equal("source_name", source)
        return allowed

    def _equal(self, name: str, value: str) -> np.ndarray:
        """Rows whose field `name` is `value` (none if no row has it)."""
        values, value = self.values[name], value.encode("utf-8")
        at = int(np.searchsorted(values, value))
        found = at < len(values) and values[at] == value
        return self.codes[TEXT_FIELDS.index(name)] == at if found else np.zeros(len(self), dtype=bool)
