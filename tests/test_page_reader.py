"""The seed page format: both variants parse into every field, exact values."""

from index.consultation import FaqTopic
from index.readers import read_sources
from index.readers.page import read_page
from tests.conftest import SEED_000, SEED_003, SEEDS


def parse(name: str):
    path = SEEDS / f"{name}.txt"
    return read_page(path, path.read_text(encoding="utf-8"))


def test_seed_000_fields():
    page, excerpts = parse(SEED_000)
    assert page.id == SEED_000
    assert page.title == "Involuntary muscle contractions?"
    assert page.question_title == ""
    assert page.question.startswith("Hello doctor, I have recently experienced some unusual symptoms.\nThe muscles")
    assert page.question.endswith("last for about half an hour.\nWhat could this be?")
    assert page.asker == "Mr. J, 20~29 year old female."
    assert page.ask_date == "2015/07/29"
    assert page.doctor == "Lan Shengxing"
    assert page.department == "Neurology"
    assert page.reply == (
        "Dear Mr.\nJ, the condition you described does not seem to be fully explained by any single disease.\n"
        "It may be necessary for you to visit a neurology outpatient clinic for further evaluation."
    )
    assert page.reply_date == "2015/07/29"
    assert page.more_info.startswith("Involuntary muscle contractions, often referred to as muscle spasms")
    assert page.more_info.endswith("so do not hesitate to reach out for help.")
    assert "Similar Q&A" not in page.more_info
    assert page.excerpt is False
    assert [p.title for p in page.panel] == [
        "Muscle Twitches and Cramps: Seeking Solutions for Unexplained Symptoms",
        "Understanding Involuntary Muscle Twitches: Causes and Solutions",
        "Understanding Involuntary Muscle Tension and Tremors in the Head",
        "Understanding Involuntary Wrist Twitches: Causes and Insights",
    ]
    assert page.related_faq[0] == FaqTopic("Muscle Cramp", "Neurology")
    assert FaqTopic("Involuntary Eye Movement", "Ophthalmology") in page.related_faq
    assert page.related_faq[-1] == FaqTopic("Tingling Sensation", "Neurology")
    assert len(page.related_faq) == 9  # the nameless "(Neurology)" entry is dropped
    assert len(excerpts) == 4


def test_seed_000_panel_excerpts():
    _, excerpts = parse(SEED_000)
    first = excerpts[0]
    assert first.excerpt is True
    assert first.title == "Muscle Twitches and Cramps: Seeking Solutions for Unexplained Symptoms"
    assert first.doctor == "Gao Chunde"
    assert first.department == "Neurology"
    assert first.question.startswith("There are involuntary muscle twitches throughout my body")
    assert first.question.endswith("but they have not been effectiv")  # the site's "..." is dropped
    assert first.reply.startswith("Generally, benign muscle fasciculations occur")
    assert first.reply.endswith("neurotransmitters that control muscle co")
    assert [e.doctor for e in excerpts] == ["Gao Chunde", "Jiang Junyi", "Lin Zijing", "Jiang Junyi"]


def test_seed_003_fields():
    page, excerpts = parse(SEED_003)
    assert page.id == SEED_003
    assert page.title == "Involuntary Muscle Tension and Tremors in the Head"
    assert page.question_title == "Involuntary tension in the mind?"
    assert page.question.startswith("I often experience involuntary muscle tension, pulling, and twitching")
    assert page.question.endswith("Please, I beg for compassion and assistance for a long-suffering patient.")
    assert page.question.count("\n") == 6
    assert page.asker == "Xiao Rong, 40~49 year old female."
    assert page.ask_date == "2008/08/07"
    assert page.doctor == "Lin Zijing"
    assert page.department == "Neurology"
    assert page.reply.startswith("Involuntary twitching may originate from the nerves themselves or the muscles.\n")
    assert page.reply.endswith("reduce the occurrence of involuntary twitching.")
    assert page.reply_date == "2008/08/07"
    assert page.more_info.startswith("It sounds like you are experiencing a very challenging")
    assert page.more_info.endswith("seek the support you need.")
    assert "\n\n\n" not in page.more_info
    assert [p.title for p in page.panel] == [
        "Understanding Neck Tension, Tremors, and Dizziness: Causes and Solutions",
        "Understanding Head Pain and Body Tremors: When to Seek Neurological Help",
        "Understanding Involuntary Head Tremors: Causes and Solutions",
        "Understanding Involuntary Head and Facial Movements: A Patient's Journey",
    ]
    assert [e.doctor for e in excerpts] == ["Jiang Junyi", "Jiang Junyi", "Hong Weibin", "Gao Chunde"]
    assert excerpts[1].question.endswith("What kind of doctor should I see for th")
    assert excerpts[1].reply.endswith("Common manifestations include tight, constric")
    assert [f.topic for f in page.related_faq] == [
        "Involuntary Muscle Movement", "Muscle Tremors", "Body Shaking", "Tremor", "Facial Twitching",
        "Muscle Cramp", "Muscle Fasciculation", "Myasthenia Gravis", "Electroencephalogram", "Headache",
    ]
    assert {f.department for f in page.related_faq} == {"Neurology"}


def test_seed_000_third_panel_entry_resolves_to_seed_003():
    consultations = {c.id: c for c in read_sources([SEEDS]).consultations}
    seed_000 = consultations[SEED_000]
    assert seed_000.panel[2].id == SEED_003
    assert len(consultations) == 9  # 2 pages + 8 excerpts, one merged into seed 003
    assert all(link.id in consultations for c in consultations.values() for link in c.panel)
    assert not any(c.excerpt and c.doctor == "Lin Zijing" for c in consultations.values())


def test_excerpt_ids_are_stable_across_reads():
    first = [c.id for c in read_sources([SEEDS]).consultations]
    assert first == [c.id for c in read_sources([SEEDS]).consultations]
