"""Reader for the consultation page text format of `seeds/`.

A page is: an optional `TITLE - DEPARTMENT` header with a `Share to:` line and a question title,
else a title line; the question; `NAME, AGE SEX. Ask Date: DATE`; `Dr. NAME reply DEPARTMENT`;
the reply; `Reply Date: DATE`; then the optional sections `More Info`, `Similar Q&A` and
`Related FAQ`. Blank lines are not significant except as paragraph breaks inside texts.
Each Similar Q&A entry becomes an excerpt consultation linked from the page.
"""

from __future__ import annotations

import re
from pathlib import Path

from index.consultation import MAX_FIELD_CHARS, Consultation, FaqTopic, PanelLink, content_id
from index.errors import ParseError

ASKER = re.compile(r"^(?P<asker>.*?)\s*Ask Date:\s*(?P<date>\S.*?)\s*$")
DOCTOR = re.compile(r"^Dr\.\s+(?P<doctor>\S.*?)\s+reply\s+(?P<department>\S.*?)\s*$")
REPLY_DATE = re.compile(r"^Reply Date:\s*(?P<date>.*?)\s*$")
FAQ_ENTRY = re.compile(r"^(?P<topic>.*?)\s*\((?P<department>[^()]+)\)$")
SHARE = "Share to:"
READ_MORE = "[Read More]"
SECTIONS = ("More Info", "Similar Q&A", "Related FAQ")
ELLIPSIS = "..."


def read_page(path: str | Path, text: str) -> tuple[Consultation, list[Consultation]]:
    """Parse one page: the page's consultation and the excerpt consultations of its panel."""
    return _Page(str(path), text).parse()


class _Page:
    """Walks the lines of one page; positions are 0-based indexes into `self.lines`."""

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.lines = [line.rstrip() for line in text.lstrip("\ufeff").splitlines()]

    def error(self, i: int, field: str, message: str) -> ParseError:
        return ParseError(self.path, min(i, len(self.lines) - 1) + 1 if self.lines else 0, field, message)

    def next_filled(self, i: int) -> int:
        """Index of the first non-blank line at or after i (len(lines) if none)."""
        while i < len(self.lines) and not self.lines[i].strip():
            i += 1
        return i

    def text(self, start: int, end: int) -> str:
        """The lines [start, end) as text: outer blank lines dropped, blank runs kept as one."""
        out: list[str] = []
        for line in self.lines[start:end]:
            line = line.strip()
            if line or (out and out[-1]):
                out.append(line)
        while out and not out[-1]:
            out.pop()
        return "\n".join(out)

    def find(self, start: int, match) -> int:
        """Index of the first line at or after start for which match(line) is true, or -1."""
        for i in range(start, len(self.lines)):
            if match(self.lines[i].strip()):
                return i
        return -1

    def parse(self) -> tuple[Consultation, list[Consultation]]:
        first = self.next_filled(0)
        if first == len(self.lines):
            raise ParseError(self.path, 0, "page", "empty file: no consultation page in it")
        title, department, question_title = self.lines[first].strip(), "", ""
        start = first + 1
        share = self.next_filled(start)
        if share < len(self.lines) and self.lines[share].strip() == SHARE:
            if " - " in title:
                title, department = (p.strip() for p in title.rsplit(" - ", 1))
            qt = self.next_filled(share + 1)
            if qt == len(self.lines):
                raise self.error(share, "question_title", "page ends after 'Share to:'")
            question_title, start = self.lines[qt].strip(), qt + 1

        asker_at = self.find(start, ASKER.match)
        if asker_at < 0:
            raise self.error(start, "asker", "no 'NAME, AGE SEX. Ask Date: DATE' line after the question")
        question = self.text(start, asker_at)
        if not question:
            raise self.error(asker_at, "question", "no question text before the asker line")
        if len(question) > MAX_FIELD_CHARS:
            raise self.error(start, "question", f"{len(question):,} characters, more than the {MAX_FIELD_CHARS:,} a field may hold")
        asker = ASKER.match(self.lines[asker_at].strip())

        doctor_at = self.next_filled(asker_at + 1)
        doctor = DOCTOR.match(self.lines[doctor_at].strip()) if doctor_at < len(self.lines) else None
        if not doctor:
            raise self.error(doctor_at, "doctor", "expected a 'Dr. NAME reply DEPARTMENT' line after the asker line")

        reply_date_at = self.find(doctor_at + 1, REPLY_DATE.match)
        if reply_date_at < 0:
            raise self.error(doctor_at + 1, "reply_date", "no 'Reply Date: DATE' line after the reply")
        reply = self.text(doctor_at + 1, reply_date_at)
        if not reply:
            raise self.error(reply_date_at, "reply", "no reply text between the doctor line and 'Reply Date:'")
        if len(reply) > MAX_FIELD_CHARS:
            raise self.error(doctor_at + 1, "reply", f"{len(reply):,} characters, more than the {MAX_FIELD_CHARS:,} a field may hold")

        sections = self.sections(reply_date_at + 1)
        page_id = Path(self.path).stem
        excerpts = self.panel(*sections["Similar Q&A"]) if "Similar Q&A" in sections else []
        page = Consultation(
            id=page_id,
            title=title,
            question_title=question_title,
            question=question,
            asker=asker["asker"].rstrip(),
            ask_date=asker["date"],
            doctor=doctor["doctor"],
            department=doctor["department"] or department,
            reply=reply,
            reply_date=REPLY_DATE.match(self.lines[reply_date_at].strip())["date"],
            more_info=self.text(*sections["More Info"]) if "More Info" in sections else "",
            source=self.path,
            panel=[PanelLink(e.title, e.id) for e in excerpts],
            related_faq=self.faq(*sections["Related FAQ"]) if "Related FAQ" in sections else [],
        )
        return page, excerpts

    def sections(self, start: int) -> dict[str, tuple[int, int]]:
        """Line ranges of the optional sections after the reply date, keyed by heading."""
        heads = [(i, self.lines[i].strip()) for i in range(start, len(self.lines)) if self.lines[i].strip() in SECTIONS]
        bounds = [i for i, _ in heads] + [len(self.lines)]
        return {name: (i + 1, bounds[n + 1]) for n, (i, name) in enumerate(heads)}

    def panel(self, start: int, end: int) -> list[Consultation]:
        """Similar Q&A entries: title, question excerpt, doctor line, reply excerpt, [Read More]."""
        entries: list[Consultation] = []
        i = self.next_filled(start)
        while i < end:
            title_at = i
            doctor_at = self.find(title_at + 1, DOCTOR.match)
            if doctor_at < 0 or doctor_at >= end:
                raise self.error(title_at, "similar_qa", "Similar Q&A entry has no 'Dr. NAME reply DEPARTMENT' line")
            more_at = self.find(doctor_at + 1, lambda line: READ_MORE in line)
            if more_at < 0 or more_at >= end:
                raise self.error(title_at, "similar_qa", f"Similar Q&A entry has no '{READ_MORE}' line")
            reply_tail, _, _ = self.lines[more_at].partition(READ_MORE)
            title = self.lines[title_at].strip()
            question = _drop_ellipsis(self.text(title_at + 1, doctor_at))
            reply = _drop_ellipsis("\n".join(p for p in (self.text(doctor_at + 1, more_at), reply_tail.strip()) if p))
            if not question:
                raise self.error(title_at, "similar_qa", "Similar Q&A entry has no question excerpt")
            doctor = DOCTOR.match(self.lines[doctor_at].strip())
            entries.append(
                Consultation(
                    id=content_id("x", title, doctor["doctor"], question),
                    title=title,
                    question=question,
                    doctor=doctor["doctor"],
                    department=doctor["department"],
                    reply=reply,
                    source=f"{self.path}:{title_at + 1}",
                    excerpt=True,
                )
            )
            i = self.next_filled(more_at + 1)
        return entries

    def faq(self, start: int, end: int) -> list[FaqTopic]:
        """Related FAQ: `Topic(Department)` on one line, or the topic on the line before."""
        topics: list[FaqTopic] = []
        pending = ""
        for line in self.lines[start:end]:
            line = line.strip()
            if not line:
                continue
            entry = FAQ_ENTRY.match(line)
            if entry is None:
                pending = line
                continue
            topic = entry["topic"] or pending
            if topic:
                topics.append(FaqTopic(topic, entry["department"].strip()))
            pending = ""
        return topics


def _drop_ellipsis(text: str) -> str:
    """Excerpts end in '...' where the site cut them; the stored text is what was shown."""
    return text[: -len(ELLIPSIS)].rstrip() if text.endswith(ELLIPSIS) else text
