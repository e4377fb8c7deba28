"""Reader for JSONL exports: one consultation object per line.

Schema (README "JSONL schema"): `id` and `question` are required non-empty strings; the other
Consultation fields are optional and typed; `panel` is a list of {"title", "id"} objects and
`related_faq` a list of {"topic", "department"} objects. Unknown fields are an error, so that a
misspelt field name does not silently drop data.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import fields
from pathlib import Path

from index.consultation import MAX_FIELD_CHARS, Consultation, FaqTopic, PanelLink, check_id, valid_unicode
from index.errors import ParseError

_TYPES = {f.name: (bool if f.name == "excerpt" else list if f.name in ("panel", "related_faq") else str)
          for f in fields(Consultation) if f.name != "source"}
_ITEM_KEYS = {"panel": ("title", "id"), "related_faq": ("topic", "department")}
NOT_UNICODE = "not valid Unicode (a lone surrogate escape such as \\ud800)"
_ITEM_TYPES = {"panel": PanelLink, "related_faq": FaqTopic}


def read_jsonl(path: str | Path, text: str, on_error: Callable[[ParseError], None]) -> Iterator[Consultation]:
    """Yield the consultations of a JSONL text; each bad line goes to on_error (raise or record).

    A leading UTF-8 byte order mark is ignored, as in pages; an empty file is an error, as a page is."""
    text = text.removeprefix("\ufeff")
    if not text.strip():
        on_error(ParseError(str(path), 0, "file", "empty file"))
        return
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield _consultation(str(path), number, line)
        except ParseError as error:
            on_error(error)


def json_object(line: str, fail: Callable[[str, str], ParseError]) -> dict:
    """One JSONL line as an object; `fail(field, message)` makes the error (not JSON, too deep,
    not an object). The topics file (index/topics.py) reads its lines with it too."""
    try:
        data = json.loads(line)
    except json.JSONDecodeError as error:
        raise fail("line", f"not valid JSON ({error.msg} at column {error.colno})") from None
    except RecursionError:
        raise fail("line", "nested too deeply to be a record") from None
    if not isinstance(data, dict):
        raise fail("line", f"expected a JSON object, got {type(data).__name__}")
    return data


def _consultation(path: str, number: int, line: str) -> Consultation:
    def fail(field: str, message: str) -> ParseError:
        return ParseError(path, number, field, message)

    data = json_object(line, fail)
    for name in ("id", "question"):
        if name not in data:
            raise fail(name, "missing (required)")
    unknown = sorted(set(data) - set(_TYPES))
    if unknown:
        raise fail(unknown[0], f"unknown field (known: {', '.join(sorted(_TYPES))})")
    for name, value in data.items():
        if not isinstance(value, _TYPES[name]):
            raise fail(name, f"expected {_TYPES[name].__name__}, got {type(value).__name__}")
        if isinstance(value, str) and len(value) > MAX_FIELD_CHARS:
            raise fail(name, f"{len(value):,} characters, more than the {MAX_FIELD_CHARS:,} a field may hold")
        if isinstance(value, str) and not valid_unicode(value):
            raise fail(name, NOT_UNICODE)
    problem = check_id(data["id"])
    if problem:
        raise fail("id", problem)
    if not data["question"].strip():
        raise fail("question", "empty (required)")
    for name, keys in _ITEM_KEYS.items():
        items = data.get(name, [])
        for n, item in enumerate(items):
            if not isinstance(item, dict) or set(item) != set(keys) or not all(isinstance(item[k], str) for k in keys):
                raise fail(f"{name}[{n}]", f"expected an object with string fields {', '.join(keys)}")
            if not all(valid_unicode(item[k]) for k in keys):
                raise fail(f"{name}[{n}]", NOT_UNICODE)
        data[name] = [_ITEM_TYPES[name](**item) for item in items]
    return Consultation(**data, source=f"{path}:{number}")
