"""The Similar Q&A panel as text, laid out the way the seed pages show it, safe for a terminal."""

from __future__ import annotations

import re

from search.searcher import Hit
from search.topics import TopicHit

# What a stored text must not send to a terminal raw: C0 and C1 control characters and DEL
# (ESC sequences clear the screen or retitle the window, CR and BS overwrite what was shown) and
# the bidirectional overrides and isolates (they reorder what follows, e.g. in an id).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")

READ_MORE = "[Read More]"


def terminal_safe(text: str) -> str:
    """The text with every unsafe character shown as its escape (ESC as \\x1b, U+202E as \\u202e);
    the one function text passes through on its way to a terminal (JSON output escapes by itself)."""
    return _UNSAFE.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}", text)


def render_panel(hits: list[Hit]) -> str:
    """Title, question excerpt, `Dr. NAME reply DEPARTMENT`, reply excerpt and [Read More] per hit.

    The id follows [Read More] in brackets so a reader can ask `simqa similar ID` next.
    """
    blocks = []
    for hit in hits:
        title, hit_id = terminal_safe(hit.title or hit.id), terminal_safe(hit.id)
        lines = [title, terminal_safe(hit.question_excerpt)]
        if hit.doctor:
            lines.append(terminal_safe(f"Dr. {hit.doctor} reply {hit.department}".rstrip()))
        if hit.reply_excerpt:
            lines.append(terminal_safe(hit.reply_excerpt))
        lines.append(f"{READ_MORE} {title} [{hit_id}]")
        if hit.explain is not None:
            lines.append(explanation(hit))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def explanation(hit: Hit) -> str:
    """`--explain`: the fused score and, per signal, raw -> normalised x weight = contribution."""
    lines = [f"  score {hit.score:.4f} ="]
    for signal, part in hit.explain.items():
        raw = "absent" if part["raw"] is None else f"{part['raw']:.4f}"
        lines.append(f"    {signal:<15} raw {raw:>8} -> {part['normalized']:+.4f} x {part['weight']:g} = {part['contribution']:+.4f}")
    return "\n".join(lines)


def render_related_faq(topics: list[TopicHit]) -> str:
    """The Related FAQ list as the seed pages show it: `Topic(Department)` per line."""
    lines = [terminal_safe(f"{t.topic}({t.department})" if t.department else t.topic) for t in topics]
    return "Related FAQ\n" + "\n".join(lines)
