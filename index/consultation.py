"""The one record simqa reads, stores and returns: a consultation."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, fields, replace
from datetime import date


@dataclass(frozen=True)
class PanelLink:
    """One Similar Q&A entry of a page: the title shown and the consultation it resolves to."""

    title: str
    id: str


@dataclass(frozen=True)
class FaqTopic:
    """One Related FAQ entry: a topic and its department."""

    topic: str
    department: str


@dataclass
class Consultation:
    """A patient's question, a doctor's reply and the notes around them.

    `excerpt` is True when question and reply are the truncated texts of a Similar Q&A entry,
    not a full page. `source` says where it was read (file, and line for JSONL).
    """

    id: str
    question: str
    title: str = ""
    question_title: str = ""
    asker: str = ""
    ask_date: str = ""
    doctor: str = ""
    department: str = ""
    reply: str = ""
    reply_date: str = ""
    more_info: str = ""
    url: str = ""
    source: str = ""
    excerpt: bool = False
    panel: list[PanelLink] = field(default_factory=list)
    related_faq: list[FaqTopic] = field(default_factory=list)

    def question_text(self) -> str:
        """Title, question title and question: what is embedded and matched as 'the question'."""
        return "\n".join(p for p in (self.title, self.question_title, self.question) if p)

    def reply_text(self) -> str:
        """Reply and more info: what is embedded and matched as 'the reply'."""
        return "\n".join(p for p in (self.reply, self.more_info) if p)

    def to_dict(self) -> dict:
        """Plain JSON-ready dict (the document store and the JSON output use it): what
        dataclasses.asdict gives, the fields in order and panel links and FAQ topics as dicts,
        without asdict's deep copy of every string (16 µs a consultation against 1.7: writing a
        store and the build's content digest each make one per consultation)."""
        data = {name: getattr(self, name) for name in _FIELDS}
        data["panel"] = [dict(vars(link)) for link in self.panel]
        data["related_faq"] = [dict(vars(topic)) for topic in self.related_faq]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "Consultation":
        """Inverse of to_dict; trusts its input (it comes from our own store)."""
        data = dict(data)
        data["panel"] = [PanelLink(**p) for p in data.get("panel", [])]
        data["related_faq"] = [FaqTopic(**f) for f in data.get("related_faq", [])]
        return cls(**data)


_FIELDS = [f.name for f in fields(Consultation)]


def normalize_space(text: str) -> str:
    """Collapse runs of white space to one space: line breaks differ between page variants."""
    return " ".join(text.split())  # str.split's white space is re's \s, at a tenth of re.sub's cost


MAX_ID_LENGTH = 256
# A field this long is an export gone wrong, not a consultation: refused with a clear error.
MAX_FIELD_CHARS = 1_000_000


def valid_unicode(text: str) -> bool:
    """False for text holding a lone surrogate: JSON's \\uXXXX escapes and undecodable command-line
    bytes can carry one, but no UTF-8 file, store, terminal or response can."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# Control characters but tab and newline (C0, DEL, C1): refused in ids, stripped from other text.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def check_id(value: str) -> str | None:
    """Why an id is unusable (empty, too long, control characters), or None if it is fine."""
    if not value.strip():
        return "empty id"
    if len(value) > MAX_ID_LENGTH:
        return f"id longer than {MAX_ID_LENGTH} characters"
    if _CONTROL.search(value) or "\t" in value or "\n" in value:
        return "id contains control characters"
    return None


def without_controls(consultation: Consultation) -> Consultation:
    """The consultation with control characters other than tab and newline stripped from every
    text but its id (a CR of a CRLF export, a stray ESC or NUL): the policy where text enters,
    applied by index.readers.read_sources to whatever a reader returns."""
    def clean(record):
        changed = {f.name: _CONTROL.sub("", value) for f in fields(record)
                   if f.name != "id" or not isinstance(record, Consultation)
                   if isinstance(value := getattr(record, f.name), str) and _CONTROL.search(value)}
        return replace(record, **changed) if changed else record

    consultation = clean(consultation)
    panel = [clean(link) for link in consultation.panel]
    faq = [clean(topic) for topic in consultation.related_faq]
    if panel != consultation.panel or faq != consultation.related_faq:
        consultation = replace(consultation, panel=panel, related_faq=faq)
    return consultation


_DATE = re.compile(r"^\s*(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})")


def iso_date(text: str) -> str:
    """An ask or reply date as ISO YYYY-MM-DD ("2015/07/29" as the pages write it, "2015-07-29",
    "2015.7.29", a time after it ignored), or "" when it is none of these or no real date."""
    match = _DATE.match(text)
    if not match:
        return ""
    try:
        return date(*map(int, match.groups())).isoformat()
    except ValueError:
        return ""


def content_id(prefix: str, *parts: str) -> str:
    """A stable id from content, for records that carry none (panel excerpts)."""
    key = "\x00".join(normalize_space(p).lower() for p in parts)
    return prefix + hashlib.sha1(key.encode("utf-8")).hexdigest()[:16]
