"""Generations: an index directory holds complete, immutable generations and a pointer to one.

    DIR/CURRENT          the name of the current generation, e.g. "gen-00000003"
    DIR/gen-00000003/    a complete index (manifest.json and the files it lists)
    DIR/.lock            held by the one process writing (builds and updates)

A writer builds the next generation in a temporary directory, fsyncs it, renames it into place,
then replaces CURRENT by writing a temporary file and renaming it over (atomic on POSIX), and
fsyncs the directory. Killed at any moment, it leaves CURRENT naming a complete generation: the
old one or the new one. Readers read CURRENT and open that generation; they never take the lock.
The previous generation is kept (a reader that read CURRENT just before a switch still finds its
files); older ones and unfinished temporary directories are removed by the next writer.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from index.errors import IndexFormatError, SimqaError

CURRENT = "CURRENT"
LOCK = ".lock"
PREFIX = "gen-"
BUILDING = ".building-"
KEEP = 2  # the current generation and the one before it


def is_index(directory: Path) -> bool:
    return (directory / CURRENT).is_file()


def current(directory: Path) -> Path:
    """The directory of the current generation; IndexFormatError if there is none."""
    try:
        name = (directory / CURRENT).read_text(encoding="utf-8").strip()
    except (FileNotFoundError, NotADirectoryError):
        raise IndexFormatError(f"{directory}: not a simqa index (no {CURRENT}); build one with 'simqa index'") from None
    if not name.startswith(PREFIX) or "/" in name or not (directory / name).is_dir():
        raise IndexFormatError(f"{directory / CURRENT}: names {name!r}, which is not a generation of this index")
    return directory / name


@contextmanager
def writer_lock(directory: Path) -> Iterator[None]:
    """Hold the directory's writer lock; a second writer gets a clear error at once."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / LOCK, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SimqaError(f"{directory} is being written by another simqa process (it holds {directory / LOCK})") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def workspace(directory: Path) -> Path:
    """A new, empty temporary directory for the next generation (call under the writer lock)."""
    work = directory / f"{BUILDING}{uuid.uuid4().hex[:8]}"
    work.mkdir(parents=True)
    return work


@contextmanager
def writing(directory: Path) -> Iterator[Path]:
    """A workspace for the next generation (call under the writer lock): published when the
    block ends, removed if it raises."""
    work = workspace(directory)
    try:
        yield work
        publish(directory, work)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def publish(directory: Path, work: Path) -> Path:
    """Make a finished workspace the current generation; returns its directory."""
    for path in (*work.rglob("*"), work):
        _fsync(path)
    number = max((_number(p.name) for p in directory.glob(PREFIX + "*")), default=0)
    generation = directory / f"{PREFIX}{max(number, 0) + 1:08d}"
    work.rename(generation)
    _fsync(directory)
    _point(directory, generation.name)
    prune(directory)
    return generation


def roll_back(directory: Path, name: str) -> None:
    """Make generation `name` current again and remove every later one. A sharded index's writer
    does this to a shard that a killed writer left ahead of the top level (index/sharded.py);
    removing the later ones keeps `name` among the generations the next publish keeps."""
    if not (directory / name).is_dir():
        raise IndexFormatError(f"{directory / name}: missing; the index is damaged, rebuild it")
    if current(directory).name != name:
        _point(directory, name)
    for path in directory.glob(PREFIX + "*"):
        if path.is_dir() and _number(path.name) > _number(name):
            shutil.rmtree(path)


def leftover(path: Path) -> bool:
    """A file a killed writer leaves behind: its lock, workspace or unfinished pointer."""
    return path.name == LOCK or path.name.startswith(BUILDING) or path.name.startswith(f".{CURRENT}.")


def _point(directory: Path, name: str) -> None:
    """Atomically make CURRENT name generation `name`."""
    pointer = directory / f".{CURRENT}.{uuid.uuid4().hex[:8]}"
    pointer.write_text(name + "\n", encoding="utf-8")
    _fsync(pointer)
    os.replace(pointer, directory / CURRENT)
    _fsync(directory)


def _number(name: str) -> int:
    digits = name[len(PREFIX):]
    return int(digits) if digits.isdigit() else -1


def prune(directory: Path) -> None:
    """Remove generations older than the last KEEP and leftovers of interrupted writers."""
    live = current(directory).name
    generations = sorted(p for p in directory.glob(PREFIX + "*") if p.is_dir())
    keep = {p.name for p in generations[-KEEP:]} | {live}
    for path in directory.iterdir():
        stale = leftover(path) and path.name != LOCK
        if stale or (path.name.startswith(PREFIX) and path.name not in keep):
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
