"""The Similar Q&A panel as text, laid out the way the seed pages show it."""

from __future__ import annotations

from search.searcher import Hit

READ_MORE = "[Read More]"


def render_panel(hits: list[Hit]) -> str:
    """Title, question excerpt, `Dr. NAME reply DEPARTMENT`, reply excerpt and [Read More] per hit.

    The id follows [Read More] in brackets so a reader can ask `simqa similar ID` next.
    """
    blocks = []
    for hit in hits:
        lines = [hit.title or hit.id, hit.question_excerpt]
        if hit.doctor:
            lines.append(f"Dr. {hit.doctor} reply {hit.department}".rstrip())
        if hit.reply_excerpt:
            lines.append(hit.reply_excerpt)
        lines.append(f"{READ_MORE} {hit.title or hit.id} [{hit.id}]")
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
