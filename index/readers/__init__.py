"""Read consultations from files and directories, dispatching on the file extension.

Every reader has one interface, `Reader`: (path, text, on_error) -> consultations, and READERS
maps each file suffix to its reader: pages (`.txt`) and JSONL (`.jsonl`, `.ndjson`); a new format
is one module and one line here. Benchmark datasets have their own loaders in `benchmarks/`.
Every error is a ParseError naming file, line and field. With `skip_bad` the reader goes on and
returns what it skipped instead of raising.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from index.consultation import Consultation, without_controls
from index.errors import ParseError
from index.excerpts import merge_excerpts
from index.readers.jsonl import read_jsonl
from index.readers.page import read_page

if TYPE_CHECKING:
    from index.ray_runner import RayRunner

Reader = Callable[[Path, str, Callable[[ParseError], None]], Iterable[Consultation]]


def _read_page(path: Path, text: str, on_error: Callable[[ParseError], None]) -> list[Consultation]:
    """A page and the Similar Q&A excerpts it carries (one page is one record: errors raise)."""
    page, excerpts = read_page(path, text)
    return [page, *excerpts]


READERS: dict[str, Reader] = {".txt": _read_page, ".jsonl": read_jsonl, ".ndjson": read_jsonl}


@dataclass
class ReadResult:
    """What a read produced: the consultations, the errors skipped, the files passed over."""

    consultations: list[Consultation]
    skipped: list[ParseError] = field(default_factory=list)
    ignored_files: list[str] = field(default_factory=list)


def read_sources(paths: Iterable[str | Path], skip_bad: bool = False, progress: bool = False,
                 ray: "RayRunner | None" = None) -> ReadResult:
    """Read every source (file or directory), merge panel excerpts, and check ids are unique.

    With a `ray` runner (index/ray_runner.py) the files are read on Ray Data, a task per file;
    what comes back, and every error, is what reading them here gives."""
    result = ReadResult([])

    def on_error(error: ParseError) -> None:
        if not skip_bad:
            raise error
        result.skipped.append(error)

    files = _files(paths, result, on_error)
    read: list[Consultation] = []
    each = ray.read(files, read_file) if ray is not None else map(read_file, files)
    for consultations, errors in tqdm(each, desc="reading", unit="file", total=len(files), disable=not progress or ray is not None):
        for error in errors:
            on_error(error)
        read.extend(consultations)
    result.consultations = _unique(merge_excerpts(read), on_error)
    return result


def read_file(path: Path) -> tuple[list[Consultation], list[ParseError]]:
    """One file's consultations and its errors (none raised): a file of bad lines still gives its good ones."""
    errors: list[ParseError] = []
    try:
        consultations = [without_controls(c) for c in READERS[path.suffix.lower()](path, read_text(path), errors.append)]
    except ParseError as error:
        return [], [error]
    return consultations, errors


def read_text(path: Path) -> str:
    """The file's text; binary or non-UTF-8 content is a ParseError naming the line."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ParseError(str(path), 0, "file", f"cannot read: {error.strerror}") from None
    if b"\x00" in data:
        raise ParseError(str(path), data[: data.index(b"\x00")].count(b"\n") + 1, "file", "binary file (NUL byte)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ParseError(str(path), line, "text", f"not UTF-8 (byte 0x{data[error.start]:02x})") from None


def _files(paths: Iterable[str | Path], result: ReadResult, on_error) -> list[Path]:
    """Expand directories (recursively, sorted); files of other extensions in them are passed over."""
    known = set(READERS)
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for child in sorted(p for p in path.rglob("*") if p.is_file()):
                (files if child.suffix.lower() in known else result.ignored_files).append(child)
        elif path.is_file():
            if path.suffix.lower() in known:
                files.append(path)
            else:
                on_error(ParseError(str(path), 0, "file", f"unknown extension (expected one of {', '.join(sorted(known))})"))
        else:
            on_error(ParseError(str(path), 0, "file", "no such file or directory"))
    return files


def _unique(consultations: list[Consultation], on_error) -> list[Consultation]:
    """Refuse a second consultation with an id already read (the first one is kept)."""
    seen: dict[str, Consultation] = {}
    out: list[Consultation] = []
    for c in consultations:
        first = seen.get(c.id)
        if first is None:
            seen[c.id] = c
            out.append(c)
            continue
        # source already reads "file" or "file:line"
        on_error(ParseError(c.source, 0, "id", f"duplicate id '{c.id}' (first read from {first.source})"))
    return out
