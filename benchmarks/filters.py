"""Filters at scale: the columns filters compare, saved at build time against folded from the store.

    python -m benchmarks.filters [--rows 1000000]

On n synthetic consultations (MedQuAD's words, as the scale benchmark's, with 40 departments,
2,000 doctors, ask dates over ten years and one page file each: the widest source column a
site gives), one run measures:
- the store's write, and of it the encoding of the filter columns (index/filter_columns.py);
- what the first filtered query waits for: the saved columns mapped, against the columns read
  from the store and folded into numpy string arrays (how shards held them before, the peer);
- the memory each holds, and each filter's mask p50 over 50 values (department, doctor, a
  date range, a source file name), both asserted to allow the same rows.
Results: benchmarks/results/speed/filters.json and filters.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from benchmarks.liveqa import write_files
from benchmarks.speed import LIVEQA, RESULTS, WORK, cpu_name, ms, synthetic_corpus, timed
from index import read_sources
from index.filter_columns import FILTERS, FilterColumns, doctor_name, folded, source_name
from index.store import DocumentStore, write_store

DEPARTMENTS = [f"Department {n}" for n in range(40)]
DOCTORS = [f"Dr. Doctor{n} Name" for n in range(2_000)]


@dataclass
class StringColumns:
    """The peer: the store's columns folded into numpy string arrays, compared as strings."""

    departments: np.ndarray
    doctors: np.ndarray
    ask_dates: np.ndarray
    source_files: np.ndarray
    source_names: np.ndarray

    @classmethod
    def read(cls, store: DocumentStore) -> "StringColumns":
        departments, doctors, dates, files = store.filter_fields()
        return cls(np.array([folded(d) for d in departments]), np.array([doctor_name(d) for d in doctors]), np.array(dates),
                   np.array(files), np.array([source_name(f) for f in files]))

    def nbytes(self) -> int:
        return sum(column.nbytes for column in vars(self).values())

    def allowed(self, department=None, doctor=None, since=None, until=None, source=None) -> np.ndarray:
        allowed = np.ones(len(self.departments), dtype=bool)
        if department is not None:
            allowed &= self.departments == folded(department)
        if doctor is not None:
            allowed &= self.doctors == doctor_name(doctor)
        if since is not None:
            allowed &= (self.ask_dates != "") & (self.ask_dates >= since)
        if until is not None:
            allowed &= (self.ask_dates != "") & (self.ask_dates <= until)
        if source is not None:
            allowed &= (self.source_files == source) | (self.source_names == source)
        return allowed


def corpus(n: int) -> list:
    """n synthetic consultations with every filter field set (module docstring)."""
    rng = np.random.default_rng(7)
    words = synthetic_corpus(n, read_sources([write_files(LIVEQA)["corpus"]]).consultations)
    days = np.datetime64("2012-01-01") + rng.integers(0, 3653, n)
    return [replace(c, department=DEPARTMENTS[d], doctor=DOCTORS[o], ask_date=str(day), source=f"/data/site/pages/{c.id}.html")
            for c, d, o, day in zip(words, rng.integers(0, len(DEPARTMENTS), n), rng.integers(0, len(DOCTORS), n), days)]


def measure(n: int) -> dict:
    directory = WORK / f"filters-{n}"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    consultations = corpus(n)
    _, write_seconds = timed(write_store, directory / "consultations.sqlite", consultations)
    _, encode_seconds = timed(FilterColumns.encode, [c.department for c in consultations], [c.doctor for c in consultations],
                              [c.ask_date for c in consultations], [c.source for c in consultations])
    del consultations
    store = DocumentStore(directory / "consultations.sqlite")
    mapped, open_seconds = timed(store.filter_columns)
    strings, read_seconds = timed(StringColumns.read, store)
    rng = np.random.default_rng(3)
    cases = {
        "department": [{"department": DEPARTMENTS[i].upper()} for i in rng.integers(0, len(DEPARTMENTS), 50)],
        "doctor": [{"doctor": DOCTORS[i].removeprefix("Dr. ")} for i in rng.integers(0, len(DOCTORS), 50)],
        "date range": [{"since": f"{y}-01-01", "until": f"{y + 1}-06-30"} for y in rng.integers(2012, 2021, 50)],
        "source name": [{"source": f"s{i}.html"} for i in rng.integers(0, n, 50)],
    }
    masks = {}
    for kind, values in cases.items():
        times = {"codes": [], "strings": []}
        for value in values:
            a, seconds = timed(mapped.allowed, **value)
            times["codes"].append(seconds)
            b, seconds = timed(strings.allowed, **value)
            times["strings"].append(seconds)
            assert np.array_equal(a, b), value
        masks[kind] = {name: ms(t)["p50"] for name, t in times.items()}
    saved = sum(p.stat().st_size for p in (directory / FILTERS).iterdir())
    return {"cpu": cpu_name(), "rows": n, "store_write_seconds": round(write_seconds, 1),
            "encode_seconds": round(encode_seconds, 2), "open_seconds": round(open_seconds, 4),
            "peer_read_and_fold_seconds": round(read_seconds, 2), "saved_mb": round(saved / 2**20, 1),
            "peer_mb": round(strings.nbytes() / 2**20, 1), "mask_p50_ms": masks}


def report(result: dict) -> str:
    lines = [f"# Filters at {result['rows']:,} synthetic consultations", "",
             f"CPU: {result['cpu']}. `python -m benchmarks.filters`; the peer holds the store's columns as numpy string arrays "
             "(how shards held them before the build saved them).", "",
             "| | saved columns (codes) | folded from the store (strings) |", "|---|---|---|",
             f"| ready for the first filtered query | {result['open_seconds'] * 1000:.1f} ms (mapped) | "
             f"{result['peer_read_and_fold_seconds']:.2f} s (read and folded) |",
             f"| memory | {result['saved_mb']} MB on disk, mapped | {result['peer_mb']} MB in RAM |"]
    for kind, times in result["mask_p50_ms"].items():
        lines.append(f"| {kind} filter, mask p50 | {times['codes']:.2f} ms | {times['strings']:.2f} ms |")
    lines += ["", f"Writing the store took {result['store_write_seconds']} s, of which encoding the columns "
              f"{result['encode_seconds']} s. Both allow the same rows for every value (asserted).", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    result = measure(parser.parse_args().rows)
    (RESULTS / "filters.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "filters.md").write_text(report(result))
    print(report(result))


if __name__ == "__main__":
    main()
