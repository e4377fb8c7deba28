"""Errors of our own, carrying where the problem is so the CLI can print one clear line."""

from __future__ import annotations


class SimqaError(Exception):
    """Base class: every error simqa raises on purpose."""


class ParseError(SimqaError):
    """Bad input: names the file, the line (1-based, 0 if unknown) and the field."""

    def __init__(self, path: str, line: int, field: str, message: str) -> None:
        self.path, self.line, self.field, self.message = str(path), line, field, message
        where = f"{self.path}:{line}" if line else self.path
        super().__init__(f"{where}: field '{field}': {message}")


class IndexFormatError(SimqaError):
    """An index directory that cannot be opened: missing, damaged, or built differently."""


class ShardUnavailable(SimqaError):
    """No replica of a shard answered (search/served.py): an answer without it would be incomplete."""

    def __init__(self, shard: str, reason: str) -> None:
        super().__init__(f"shard {shard} is unavailable ({reason}); its consultations would be missing, so there is no answer")
        self.shard = shard
