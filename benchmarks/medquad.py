"""MedQuAD as consultations: one per QA pair, ids as the LiveQA-Med qrels name them.

Document id `SOURCE_DOCID_SecN`: SOURCE is the XML's `source` attribute (with
`MPlusHerbsSupplements` written `MPlusHerbsSuppls`, as in the qrels), DOCID the file name without
`.xml` (it equals the Document's id attribute except in 15 CancerGov files, whose id attributes
repeat another file's), and N the 1-based position of the QAPair in its file (not its `pid`). The focus is the title, its
synonyms the question title, the question the question and the answer the reply. Answers removed
from three subsets (ADAM, MPlusDrugs, MPlusHerbsSupplements) are filled from the judged-answers
CSV where it has them; the rest keep an empty reply.
"""

from __future__ import annotations

import csv
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from index.consultation import Consultation

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets"
MEDQUAD = SHARED / "medquad"
ANSWERS_CSV = SHARED / "liveqa_med_2017" / "All-2479-Answers-retrieved-from-MedQuAD.csv"
SOURCE_IN_IDS = {"MPlusHerbsSupplements": "MPlusHerbsSuppls"}


def judged_answers(path: Path = ANSWERS_CSV) -> dict[str, str]:
    """AnswerID (without .txt) -> answer text, from the CSV's 'Question: ... Answer: ...' cells."""
    csv.field_size_limit(sys.maxsize)
    answers = {}
    with path.open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            text = row["Answer"]
            answers[row["AnswerID"].removesuffix(".txt")] = text.split("\nAnswer:", 1)[1].strip() if "\nAnswer:" in text else text
    return answers


def load_medquad(root: Path = MEDQUAD, answers_csv: Path | None = ANSWERS_CSV) -> list[Consultation]:
    """Every QA pair of MedQuAD, in directory and file order."""
    fill = judged_answers(answers_csv) if answers_csv else {}
    out: list[Consultation] = []
    for path in sorted(root.glob("*/*.xml")):
        document = ET.parse(path).getroot()
        source = document.get("source", "")
        prefix = f"{SOURCE_IN_IDS.get(source, source)}_{path.stem}"
        focus = (document.findtext("Focus") or "").strip()
        synonyms = [s.text.strip() for s in document.iter("Synonym") if s.text and s.text.strip()]
        for n, pair in enumerate(document.iter("QAPair"), 1):
            doc_id = f"{prefix}_Sec{n}"
            answer = " ".join((pair.findtext("Answer") or "").split())
            out.append(
                Consultation(
                    id=doc_id,
                    title=focus,
                    question_title="; ".join(synonyms),
                    question=" ".join((pair.findtext("Question") or "").split()),
                    reply=answer or fill.get(doc_id, ""),
                    url=document.get("url", ""),
                    source=str(path),
                )
            )
    return out
