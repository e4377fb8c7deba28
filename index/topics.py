"""Related FAQ topics: the topic list an index holds, read from a file or gathered, and stored.

A topic is one FAQ page of the site (its name, department, synonyms and url), the entries a
consultation page lists under "Related FAQ". An index holds one list for the whole collection:
from a topics JSONL file (`simqa index --topics`, one {"topic", "department", "synonyms", "url"}
per line), or else gathered from the consultations' own Related FAQ lists. It is stored in the
generation the Searcher opens (a single index's, or a sharded index's top level) as two files the
manifest lists like any other: `topics.json` and `topic_vectors.npy`, one unit vector per name
(the topic, then each synonym), so the meaning of every name is matched without the model
running at query time. Finding a text's topics is the query side's (search/topics.py).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from index.consultation import Consultation, normalize_space, valid_unicode
from index.errors import IndexFormatError, ParseError
from index.readers.jsonl import json_object

TOPICS = "topics.json"
TOPIC_VECTORS = "topic_vectors.npy"
_FIELDS = {"topic": str, "department": str, "synonyms": list, "url": str}


@dataclass(frozen=True)
class Topic:
    """One Related FAQ topic: its name, department, other names and page."""

    topic: str
    department: str = ""
    synonyms: list[str] = field(default_factory=list)
    url: str = ""

    @property
    def names(self) -> list[str]:
        """The names it is found by: the topic, then its synonyms."""
        return [self.topic, *self.synonyms]

    @property
    def key(self) -> str:
        return topic_key(self.topic)


def topic_key(name: str) -> str:
    """What makes two topic names the same topic: case and white space folded."""
    return normalize_space(name).casefold()


def read_topics(path: str | Path) -> list[Topic]:
    """The topics of a JSONL file; ParseError names file, line and field of the first bad one
    (missing or empty name, duplicate topic, url that is not http(s), unknown or mistyped field)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8").removeprefix("\ufeff")
    except (OSError, UnicodeDecodeError) as error:
        raise ParseError(str(path), 0, "file", f"cannot read topics ({error})") from None
    topics: list[Topic] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        topic = _topic(str(path), number, line)
        if topic.key in seen:
            raise ParseError(str(path), number, "topic", f"duplicate topic {topic.topic!r} (first on line {seen[topic.key]})")
        seen[topic.key] = number
        topics.append(topic)
    if not topics:
        raise ParseError(str(path), 0, "file", "no topics")
    return topics


def _topic(path: str, number: int, line: str) -> Topic:
    def fail(name: str, message: str) -> ParseError:
        return ParseError(path, number, name, message)

    data = json_object(line, fail)
    unknown = sorted(set(data) - set(_FIELDS))
    if unknown:
        raise fail(unknown[0], f"unknown field (known: {', '.join(_FIELDS)})")
    if "topic" not in data:
        raise fail("topic", "missing (required)")
    for name, value in data.items():
        if not isinstance(value, _FIELDS[name]):
            raise fail(name, f"expected {_FIELDS[name].__name__}, got {type(value).__name__}")
    synonyms = data.get("synonyms", [])
    if not all(isinstance(s, str) for s in synonyms):
        raise fail("synonyms", "expected a list of strings")
    for name in ("topic", "department", "url"):
        if not valid_unicode(data.get(name, "")):
            raise fail(name, "not valid Unicode (a lone surrogate escape such as \\ud800)")
    if not data["topic"].strip():
        raise fail("topic", "empty (required)")
    url = data.get("url", "").strip()
    if url and not url.lower().startswith(("http://", "https://")):
        raise fail("url", f"{url[:80]!r} is not an http(s) URL")
    names = [normalize_space(s) for s in synonyms if s.strip() and valid_unicode(s)]
    own = topic_key(data["topic"])
    return Topic(normalize_space(data["topic"]), normalize_space(data.get("department", "")),
                 list(dict.fromkeys(s for s in names if topic_key(s) != own)), url)


def gather_topics(consultations: list[Consultation]) -> list[Topic]:
    """The topics named in the consultations' own Related FAQ lists, in order of first mention;
    a topic listed under several departments takes the one it is listed under most."""
    departments: dict[str, Counter] = {}
    names: dict[str, str] = {}
    for consultation in consultations:
        for entry in consultation.related_faq:
            key = topic_key(entry.topic)
            if key:
                names.setdefault(key, normalize_space(entry.topic))
                departments.setdefault(key, Counter())[normalize_space(entry.department)] += 1
    return [Topic(names[key], departments[key].most_common(1)[0][0]) for key in names]


def write(directory: Path, topics: list[Topic], vectors: np.ndarray) -> None:
    """Store a topic list and its name vectors (rows in the order of `name_texts(topics)`)."""
    (directory / TOPICS).write_text(_json(topics), encoding="utf-8")
    np.save(directory / TOPIC_VECTORS, np.asarray(vectors, dtype=np.float32), allow_pickle=False)


def digest(topics: list[Topic]) -> str:
    """SHA-256 of a topic list as stored: equal for equal lists (a writer skips an unchanged one)."""
    return hashlib.sha256(_json(topics).encode("utf-8")).hexdigest()


def _json(topics: list[Topic]) -> str:
    return json.dumps([asdict(t) for t in topics], ensure_ascii=False, indent=0) + "\n"


def name_texts(topics: list[Topic]) -> list[str]:
    """What is embedded for a topic list: every name of every topic, in order."""
    return [name for topic in topics for name in topic.names]


@dataclass
class StoredTopics:
    """A generation's topics, opened: the list, and its name vectors memory-mapped."""

    topics: list[Topic]
    vectors: np.ndarray  # one row per name, in name_texts order
    name_topic: np.ndarray  # the topic of each row

    @classmethod
    def open(cls, generation: Path) -> "StoredTopics":
        """The generation's topics (an empty list for an index built before it held any)."""
        if not (generation / TOPICS).is_file():
            return cls([], np.zeros((0, 0), dtype=np.float32), np.zeros(0, dtype=np.int64))
        topics = [Topic(**t) for t in json.loads((generation / TOPICS).read_text(encoding="utf-8"))]
        vectors = np.asarray(np.load(generation / TOPIC_VECTORS, mmap_mode="r"))
        name_topic = np.repeat(np.arange(len(topics)), [len(t.names) for t in topics])
        if len(vectors) != len(name_topic):
            raise IndexFormatError(f"{generation}: {len(vectors)} topic vectors for {len(name_topic)} topic names")
        return cls(topics, vectors, name_topic)
