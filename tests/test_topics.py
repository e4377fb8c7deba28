"""Related FAQ topics (index/topics.py, search/topics.py): the topics file, topics gathered from
pages, the seed pages' own topics first, misspelt names, updates, shards, verify, CLI and HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from index import BuildConfig, build_index, read_sources, update_index
from index.consultation import Consultation, FaqTopic
from index.errors import IndexFormatError, ParseError
from index.topics import read_topics
from search import Searcher
from search.cli import main
from search.server import create_app
from tests.conftest import SEED_000, SEED_003, SEEDS

TOPICS = [
    {"topic": "Wegener's granulomatosis", "department": "Rheumatology", "synonyms": ["granulomatosis with polyangiitis"],
     "url": "https://example.org/faq/wegener"},
    {"topic": "Beckwith-Wiedemann syndrome", "department": "Genetics"},
    {"topic": "Antiphospholipid syndrome", "department": "Hematology", "synonyms": ["Hughes syndrome"]},
    {"topic": "Migraine", "department": "Neurology"},
    {"topic": "Asthma", "department": "Pulmonology"},
]
CORPUS = [
    Consultation(id="wegener", question="My nose bleeds and my kidneys are inflamed; the doctor said Wegener's granulomatosis.",
                 related_faq=[FaqTopic("Wegener's granulomatosis", "Rheumatology")]),
    Consultation(id="beckwith", question="My baby has a large tongue; is Beckwith-Wiedemann syndrome why one side grows faster?",
                 related_faq=[FaqTopic("Beckwith-Wiedemann syndrome", "Genetics")]),
    Consultation(id="antiphospholipid", question="I had three miscarriages and blood clots: could it be antiphospholipid syndrome?",
                 related_faq=[FaqTopic("Antiphospholipid syndrome", "Hematology")]),
    Consultation(id="migraine", question="Throbbing headache on one side with flashing lights before it.",
                 related_faq=[FaqTopic("Migraine", "Neurology")]),
    Consultation(id="asthma", question="I wheeze at night and my chest feels tight after running.",
                 related_faq=[FaqTopic("Asthma", "Pulmonology")]),
]


def write_topics(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def topics_index(tmp_path_factory, encoder) -> Path:
    directory = tmp_path_factory.mktemp("topics") / "index"
    topics = read_topics(write_topics(directory.parent / "topics.jsonl", TOPICS))
    build_index(CORPUS, directory, BuildConfig(progress=False, topics=topics), encoder=encoder)
    return directory


@pytest.mark.parametrize("row, field, message", [
    ({"department": "Neurology"}, "topic", "missing"),
    ({"topic": "  "}, "topic", "empty"),
    ({"topic": "MIGRAINE "}, "topic", "duplicate topic"),
    ({"topic": "Gout", "url": "javascript:alert(1)"}, "url", "not an http(s) URL"),
    ({"topic": "Gout", "synonym": []}, "synonym", "unknown field"),
    ({"topic": "Gout", "synonyms": "podagra"}, "synonyms", "expected list"),
    ("{not json", "line", "not valid JSON"),
])
def test_a_bad_topics_file_names_file_line_and_field(tmp_path, row, field, message):
    path = write_topics(tmp_path / "topics.jsonl", [{"topic": "Migraine"}, row])
    with pytest.raises(ParseError) as raised:
        read_topics(path)
    assert (raised.value.path, raised.value.line, raised.value.field) == (str(path), 2, field)
    assert message in str(raised.value) and f"{path}:2" in str(raised.value)


def test_each_seed_page_ranks_its_own_topics_above_the_other_pages(seeds_index, searcher):
    """The topic list gathered from both seed pages' Related FAQ entries; shared topics aside,
    every topic of a page comes before every topic only the other page lists."""
    pages = {c.id: c for c in read_sources([SEEDS]).consultations if c.related_faq}
    assert searcher.manifest.parameters["topics"]["source"] == "gathered"
    assert len(searcher.topics) == len({t.topic.lower() for c in pages.values() for t in c.related_faq})
    for own, other in ((SEED_000, SEED_003), (SEED_003, SEED_000)):
        mine = {t.topic for t in pages[own].related_faq} - {t.topic for t in pages[other].related_faq}
        theirs = {t.topic for t in pages[other].related_faq} - {t.topic for t in pages[own].related_faq}
        for topics in (searcher.related_faq(text=pages[own].question, k=50), searcher.related_faq(consultation_id=own, k=50)):
            ranks = {t.topic: t.rank for t in topics}
            assert mine | theirs <= set(ranks)
            assert max(ranks[t] for t in mine) < min(ranks[t] for t in theirs), [t.topic for t in topics]
            assert topics[0].department == "Neurology" and topics[0].score > 0


@pytest.mark.parametrize("text, topic", [
    ("is wegeners disease hereditary", "Wegener's granulomatosis"),
    ("my son was diagnosed with beckwith wieddeman what now", "Beckwith-Wiedemann syndrome"),
    ("antiphosoholipid and pregnancy, is aspirin enough", "Antiphospholipid syndrome"),
    ("what is hughes syndrome", "Antiphospholipid syndrome"),
])
def test_misspelt_names_and_synonyms_are_found(topics_index, text, topic):
    searcher = Searcher.open(topics_index)
    assert searcher.related_faq(text=text, k=1, signals=("names",))[0].topic == topic
    best = searcher.related_faq(text=text, k=3)
    assert best[0].topic == topic and best[0].scores["names"] > 0
    assert {h.topic: h.url for h in searcher.related_faq(text="wegeners", k=5)}["Wegener's granulomatosis"] == "https://example.org/faq/wegener"


def test_a_consultation_without_a_list_votes_for_the_topic_its_title_names(tmp_path, encoder):
    """Pages without Related FAQ lists: the nearest consultations vote for the topics their
    titles name best. The question names no topic, so only the vote can find it."""
    directory = tmp_path / "index"
    topics = read_topics(write_topics(tmp_path / "topics.jsonl", TOPICS))
    unlisted = [Consultation(id=c.id, title=title, question=c.question) for c, title in zip(CORPUS, (
        "Wegener's granulomatosis and nosebleeds", "Beckwith-Wiedemann syndrome in a newborn", "Clots and miscarriages",
        "Migraine with aura", "Asthma at night"))]
    build_index(unlisted, directory, BuildConfig(progress=False, topics=topics), encoder=encoder)
    searcher = Searcher.open(directory)
    question = "I wake up at night wheezing and my chest is tight after I run"
    assert searcher.related_faq(text=question, k=5, signals=("names",)) == []
    voted = searcher.related_faq(text=question, k=5, signals=("votes",))
    assert voted[0].topic == "Asthma" and voted[0].scores["votes"] == 1.0
    assert "Antiphospholipid syndrome" not in [h.topic for h in voted]  # its title names no topic
    assert searcher.related_faq(consultation_id="migraine", k=1)[0].topic == "Migraine"


def test_an_index_without_topics_answers_an_empty_list(tmp_path, encoder):
    directory = tmp_path / "index"
    build_index([Consultation(id="x", question="a cough for a week"), Consultation(id="y", question="a rash on the arm")],
                directory, BuildConfig(progress=False), encoder=encoder)
    searcher = Searcher.open(directory)
    assert searcher.related_faq(text="cough") == [] and searcher.related_faq(consultation_id="x") == []
    client = TestClient(create_app(searcher))
    response = client.get("/api/related-faq", params={"q": "cough"})
    assert response.status_code == 200 and response.json()["topics"] == []


def test_topics_are_kept_through_updates_and_gathered_ones_follow_the_consultations(tmp_path, topics_index, encoder):
    import shutil

    directory = tmp_path / "index"
    shutil.copytree(topics_index, directory)
    update_index(directory, upserts=[Consultation(id="gout", question="gout in my big toe", related_faq=[FaqTopic("Gout", "Rheumatology")])],
                 config=BuildConfig(progress=False))
    searcher = Searcher.open(directory)
    assert searcher.manifest.parameters["topics"]["source"] == "file"
    assert [t.topic for t in searcher.topics.topics] == [t["topic"] for t in TOPICS]  # the file's list, not the pages'
    gathered = tmp_path / "gathered"
    build_index(CORPUS, gathered, BuildConfig(progress=False), encoder=encoder)
    update_index(gathered, upserts=[Consultation(id="gout", question="gout in my big toe", related_faq=[FaqTopic("Gout", "Rheumatology")])],
                 config=BuildConfig(progress=False))
    assert Searcher.open(gathered).related_faq(text="gout big toe", k=1)[0].topic == "Gout"
    update_index(gathered, deletes=["gout"], config=BuildConfig(progress=False))
    assert "Gout" not in [t.topic for t in Searcher.open(gathered).topics.topics]


def test_topics_are_verified_like_every_file(tmp_path, topics_index):
    import shutil

    from index import generations

    directory = tmp_path / "index"
    shutil.copytree(topics_index, directory)
    (generations.current(directory) / "topics.json").write_text("[]\n", encoding="utf-8")
    with pytest.raises(IndexFormatError, match="topics.json"):
        Searcher.open(directory)


def test_a_sharded_index_holds_the_topics_at_its_top_level(tmp_path, topics_index, encoder):
    directory = tmp_path / "sharded"
    build_index(CORPUS, directory, BuildConfig(progress=False, shards=2, topics=read_topics(write_topics(tmp_path / "t.jsonl", TOPICS))),
                encoder=encoder)
    one, many = Searcher.open(topics_index), Searcher.open(directory)
    for text in ("is wegeners disease hereditary", "headache with flashing lights", "wheezing at night"):
        assert [(t.topic, round(t.score, 6)) for t in many.related_faq(text=text)] == \
            [(t.topic, round(t.score, 6)) for t in one.related_faq(text=text)]
    update_index(directory, deletes=["asthma"], config=BuildConfig(progress=False))
    assert Searcher.open(directory).manifest.parameters["topics"]["source"] == "file"


def test_cli_and_http(topics_index, capsys):
    assert main(["related-faq", "is wegeners disease hereditary", "--index", str(topics_index), "-k", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Related FAQ\nWegener's granulomatosis(Rheumatology)\n")
    assert main(["related-faq", "--id", "migraine", "--index", str(topics_index), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["topic"] == "Migraine"
    assert main(["related-faq", "--index", str(topics_index)]) == 1
    assert "give a text or --id" in capsys.readouterr().err
    client = TestClient(create_app(Searcher.open(topics_index)))
    by_text = client.get("/api/related-faq", params={"q": "is wegeners disease hereditary", "k": 2}).json()
    assert by_text["topics"][0] | {"score": None, "scores": None} == {
        "topic": "Wegener's granulomatosis", "department": "Rheumatology", "url": "https://example.org/faq/wegener", "rank": 1,
        "score": None, "scores": None}
    assert client.get("/api/related-faq", params={"id": "migraine"}).json()["topics"][0]["topic"] == "Migraine"
    assert client.get("/api/related-faq", params={"id": "nope"}).status_code == 404
    assert client.get("/api/related-faq").status_code == 422
    assert client.get("/api/related-faq", params={"q": "x", "id": "migraine"}).status_code == 422
    assert client.get("/api/related-faq", params={"q": "   "}).status_code == 422
