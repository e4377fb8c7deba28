"""The document store: consultations in SQLite, one row per consultation, rows in index order.

Row numbers are the local positions used by BM25 and FAISS; `id` is the global id that appears in
results, so an index can be one shard of many. Each consultation is stored as JSON (no pickle),
and beside it what a hit shows of it (index/snippets.py), which is all a query's hits read.
What every query needs of every row lives beside it in .npy files, memory-mapped on open so that
opening does not grow with the collection: the ids in row order, the ids sorted with their rows
(an id's row by binary search), the question hashes (duplicates), and the columns filters
compare (index/filter_columns.py).
"""

from __future__ import annotations

import json
import hashlib
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from index.consultation import Consultation, iso_date, normalize_space
from index.errors import IndexFormatError
from index.filter_columns import FILTERS, FilterColumns
from index.snippets import Snippet

SCHEMA = """
CREATE TABLE consultations (
    row INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    department TEXT NOT NULL,
    doctor TEXT NOT NULL,
    ask_date TEXT NOT NULL,
    source_file TEXT NOT NULL,
    question_hash INTEGER NOT NULL,
    data TEXT NOT NULL,
    snippet TEXT NOT NULL
)
"""


IDS = "ids.npy"  # beside the store file: the ids in row order
SORTED_IDS = "ids_sorted.npy"  # ...sorted
SORTED_ROWS = "ids_sorted_rows.npy"  # ...and the row of each
QUESTION_HASHES = "question_hashes.npy"


def write_store(path: Path, consultations: list[Consultation], kept: Kept | None = None) -> None:
    """Write a new store file holding the consultations in the given order, and its columns.
    `kept`: rows another store holds exactly (an update's unchanged consultations), copied from
    it as stored by SQLite, not encoded again (their JSON and snippet)."""
    ids = np.array([c.id for c in consultations])
    order = np.argsort(ids, kind="stable")
    np.save(path.with_name(IDS), ids, allow_pickle=False)
    np.save(path.with_name(SORTED_IDS), ids[order], allow_pickle=False)
    np.save(path.with_name(SORTED_ROWS), order.astype(np.int64), allow_pickle=False)
    # each made once, for the columns beside the store and for its rows
    hashes = [question_hash(c.question) for c in consultations]
    dates = [iso_date(c.ask_date) for c in consultations]
    sources = [source_file(c.source) for c in consultations]
    np.save(path.with_name(QUESTION_HASHES), np.array(hashes, dtype=np.int64), allow_pickle=False)
    FilterColumns.encode([c.department for c in consultations], [c.doctor for c in consultations], dates,
                         sources).write(path.with_name(FILTERS))
    written = range(len(consultations))
    with sqlite3.connect(path.resolve().as_uri(), uri=True) as db:
        db.execute(SCHEMA)
        if kept is not None and len(kept.rows):
            kept.copy(db)
            written = np.setdiff1d(np.arange(len(consultations)), kept.rows).tolist()
        rows = ((row, consultations[row]) for row in written)
        db.executemany(
            "INSERT INTO consultations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                (row, c.id, c.department, c.doctor, dates[row], sources[row], hashes[row],
                 json.dumps(c.to_dict(), ensure_ascii=False), Snippet.of(c).to_json())
                for row, c in rows
            ),
        )
    db.close()


@dataclass(frozen=True)
class Kept:
    """Rows of a new store that another store (`source`, a generation's, immutable) holds exactly:
    row `rows[i]` is its row `source_rows[i]`. At 1M consultations making each row's JSON and
    snippet again took most of an update's store stage."""

    source: Path
    rows: np.ndarray
    source_rows: np.ndarray

    def copy(self, db: sqlite3.Connection) -> None:
        """Insert the kept rows, renumbered, into `db`'s table, in one statement SQLite runs."""
        db.execute("ATTACH DATABASE ? AS source", (f"{self.source.resolve().as_uri()}?mode=ro&immutable=1",))
        db.execute("CREATE TEMP TABLE kept (row INTEGER PRIMARY KEY, source_row INTEGER NOT NULL)")
        db.executemany("INSERT INTO kept VALUES (?, ?)", zip(self.rows.tolist(), self.source_rows.tolist()))
        db.execute("INSERT INTO consultations SELECT kept.row, c.id, c.department, c.doctor, c.ask_date, c.source_file, "
                   "c.question_hash, c.data, c.snippet FROM kept JOIN source.consultations AS c ON c.row = kept.source_row")
        db.commit()
        db.execute("DETACH DATABASE source")


def source_file(source: str) -> str:
    """The file a consultation was read from: its `source` without the `:LINE` of a JSONL line."""
    head, _, line = source.rpartition(":")
    return head if head and line.isdigit() else source


def question_hash(question: str) -> int:
    """64-bit hash of the question body, white space and case folded: equal for reposts (a
    repost's title is often another), the duplicates a panel shows once."""
    digest = hashlib.sha1(normalize_space(question).lower().encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class RowsById:
    """id -> row over the memory-mapped sorted ids: a binary search, no dict built on open."""

    def __init__(self, sorted_ids: np.ndarray, rows: np.ndarray) -> None:
        self._ids, self._rows = sorted_ids, rows

    def __len__(self) -> int:
        return len(self._ids)

    def get(self, consultation_id: str, default: int | None = None) -> int | None:
        at = int(np.searchsorted(self._ids, consultation_id))
        return int(self._rows[at]) if at < len(self._ids) and self._ids[at] == consultation_id else default

    def __getitem__(self, consultation_id: str) -> int:
        row = self.get(consultation_id)
        if row is None:
            raise KeyError(consultation_id)
        return row

    def __contains__(self, consultation_id: object) -> bool:
        return isinstance(consultation_id, str) and self.get(consultation_id) is not None


class DocumentStore:
    """Read-only access to a store file; safe to share between threads."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise IndexFormatError(f"{path}: document store missing")
        self.path = path
        # immutable: a generation's files never change once published (index/generations.py), so
        # SQLite may skip the file lock and change check it makes around every statement (system
        # calls: 27 -> 13 µs a query's read of 3 rows; a sharded index makes one such read per
        # shard holding a hit). as_uri quotes a path's '?' and '#'.
        self.db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True, check_same_thread=False)
        self._lock = threading.Lock()  # one connection shared by request threads
        try:
            self.db.execute("SELECT row FROM consultations LIMIT 1").fetchall()
            self.ids = np.load(path.with_name(IDS), mmap_mode="r")
            self.question_hashes = np.load(path.with_name(QUESTION_HASHES), mmap_mode="r")
            self.rows = RowsById(np.load(path.with_name(SORTED_IDS), mmap_mode="r"), np.load(path.with_name(SORTED_ROWS), mmap_mode="r"))
        except sqlite3.DatabaseError as error:
            raise IndexFormatError(f"{path}: not a readable document store ({error})") from None
        except (OSError, ValueError) as error:
            raise IndexFormatError(f"{path.parent}: the store's columns are unreadable ({error}); rebuild the index") from None
        if not len(self.ids) == len(self.question_hashes) == len(self.rows):
            raise IndexFormatError(f"{path.parent}: the store's columns disagree on the number of consultations; rebuild the index")

    def filter_columns(self) -> FilterColumns:
        """The columns filters compare, memory-mapped; a store written before they were saved
        beside it has them encoded from its rows (a few seconds at 1M consultations)."""
        directory = self.path.with_name(FILTERS)
        if not directory.is_dir():
            return FilterColumns.encode(*self.filter_fields())
        try:
            columns = FilterColumns.open(directory)
        except (OSError, ValueError) as error:
            raise IndexFormatError(f"{directory}: the filter columns are unreadable ({error}); rebuild the index") from None
        if len(columns) != len(self):
            raise IndexFormatError(f"{directory}: filter columns for {len(columns)} consultations, the store holds {len(self)}; rebuild the index")
        return columns

    def filter_fields(self) -> tuple[list[str], list[str], list[str], list[str]]:
        """Department, doctor, ask date (ISO, "" where unknown) and source file of every row, in
        row order, as the store's columns hold them."""
        with self._lock:
            rows = self.db.execute("SELECT department, doctor, ask_date, source_file FROM consultations ORDER BY row").fetchall()
        return tuple([r[i] for r in rows] for i in range(4))

    def __len__(self) -> int:
        return len(self.ids)

    def get(self, rows: list[int]) -> list[Consultation]:
        """The consultations at these rows, in the order asked."""
        return [Consultation.from_dict(json.loads(text)) for text in self._read("data", rows)]

    def snippets(self, rows: list[int]) -> list[Snippet]:
        """What hits show of the consultations at these rows, in the order asked."""
        return Snippet.from_jsons(self._read("snippet", rows))

    def _read(self, column: str, rows: list[int]) -> list[str]:
        """One column's values at these rows, in the order asked."""
        rows = [int(r) for r in rows]
        found: dict[int, str] = {}
        with self._lock:
            # A statement takes at most SQLite's limit of parameters (250,000 by default, 32,766
            # before 3.32): an update reads every row, so a large index is read in batches.
            batch = self.db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
            for start in range(0, len(rows), batch):
                part = rows[start : start + batch]
                found.update(self.db.execute(f"SELECT row, {column} FROM consultations WHERE row IN ({','.join('?' * len(part))})", part))
        return [found[r] for r in rows]

    def close(self) -> None:
        self.db.close()
