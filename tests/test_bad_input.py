"""Bad input: each case names file, line and field; --skip-bad goes on and reports."""

import json

import pytest

from index.errors import ParseError
from index.readers import read_sources
from tests.conftest import SEED_000, SEEDS

GOOD = {"id": "c1", "question": "Why does my knee hurt after running?", "reply": "Rest it.", "department": "Orthopedics"}


def write(path, text: str | bytes):
    (path.write_bytes if isinstance(text, bytes) else lambda t: path.write_text(t, encoding="utf-8"))(text)
    return path


def error_of(*paths) -> ParseError:
    with pytest.raises(ParseError) as caught:
        read_sources(paths)
    return caught.value


def seed_text() -> str:
    return (SEEDS / f"{SEED_000}.txt").read_text(encoding="utf-8")


def test_page_without_doctor_line(tmp_path):
    text = seed_text().replace("Dr. Lan Shengxing reply Neurology\n", "")
    error = error_of(write(tmp_path / "page.txt", text))
    assert (error.path, error.line, error.field) == (str(tmp_path / "page.txt"), 12, "doctor")
    assert "Dr. NAME reply DEPARTMENT" in str(error)


def test_page_without_asker_line(tmp_path):
    text = seed_text().replace("Mr. J, 20~29 year old female. Ask Date: 2015/07/29\n", "")
    error = error_of(write(tmp_path / "page.txt", text))
    assert (error.line, error.field) == (2, "asker")


def test_truncated_page(tmp_path):
    text = "\n".join(seed_text().splitlines()[:14])  # cut inside the reply
    error = error_of(write(tmp_path / "page.txt", text))
    assert error.field == "reply_date"


def test_truncated_panel_entry(tmp_path):
    text = seed_text().split("Dr. Jiang Junyi reply Neurology\nHello: Your symptoms")[0]
    error = error_of(write(tmp_path / "page.txt", text))
    assert error.field == "similar_qa"
    assert error.line == 51  # the title line of the entry that has no doctor line


def test_empty_file(tmp_path):
    error = error_of(write(tmp_path / "empty.txt", "\n  \n"))
    assert (error.line, error.field) == (0, "page")
    assert "empty file" in str(error)


def test_empty_jsonl_is_an_error_as_an_empty_page_is_and_a_bom_is_ignored(tmp_path):
    error = error_of(write(tmp_path / "empty.jsonl", "\n \n"))
    assert (error.line, error.field) == (0, "file") and "empty file" in str(error)
    path = write(tmp_path / "bom.jsonl", "\ufeff" + json.dumps(GOOD) + "\n")
    assert [c.id for c in read_sources([path]).consultations] == [GOOD["id"]]


def test_not_utf8(tmp_path):
    error = error_of(write(tmp_path / "latin1.txt", "line one\nline two caf\xe9\n".encode("latin-1")))
    assert (error.line, error.field) == (2, "text")
    assert "not UTF-8" in str(error)


def test_binary_file(tmp_path):
    error = error_of(write(tmp_path / "blob.jsonl", b"\x89PNG\r\n\x00\x00"))
    assert error.field == "file" and "binary" in str(error)


def test_missing_path_and_unknown_extension(tmp_path):
    assert "no such file" in str(error_of(tmp_path / "nope.txt"))
    assert "unknown extension" in str(error_of(write(tmp_path / "data.csv", "a,b")))


@pytest.mark.parametrize(
    "line, field, message",
    [
        ("[1, 2]", "line", "expected a JSON object"),
        ("{not json", "line", "not valid JSON"),
        (json.dumps({"question": "q?"}), "id", "missing"),
        (json.dumps({"id": "a"}), "question", "missing"),
        (json.dumps({"id": "", "question": "q?"}), "id", "empty id"),
        (json.dumps({"id": "a\x07b", "question": "q?"}), "id", "control characters"),
        (json.dumps({"id": 7, "question": "q?"}), "id", "expected str, got int"),
        (json.dumps({"id": "a", "question": "   "}), "question", "empty"),
        (json.dumps({"id": "a", "question": "q?", "replly": "typo"}), "replly", "unknown field"),
        (json.dumps({"id": "a", "question": "q?", "panel": [{"title": "t"}]}), "panel[0]", "title, id"),
        ('{"id": "a", "question": "q \\ud800?"}', "question", "lone surrogate"),
        ('{"id": "a\\udfff", "question": "q?"}', "id", "lone surrogate"),
        ('{"id": "a", "question": "q?", "panel": [{"title": "t\\ud800", "id": "b"}]}', "panel[0]", "lone surrogate"),
        ("[" * 100_000, "line", "nested too deeply"),
    ],
)
def test_jsonl_line_errors(tmp_path, line, field, message):
    path = write(tmp_path / "export.jsonl", json.dumps(GOOD) + "\n" + line + "\n")
    error = error_of(path)
    assert (error.path, error.line, error.field) == (str(path), 2, field)
    assert message in str(error)


def test_duplicate_ids_across_files(tmp_path):
    write(tmp_path / "a.jsonl", json.dumps(GOOD) + "\n")
    write(tmp_path / "b.jsonl", "\n" + json.dumps(GOOD) + "\n")
    error = error_of(tmp_path)
    assert error.field == "id" and f"{tmp_path / 'b.jsonl'}:2" in str(error) and "duplicate id 'c1'" in str(error)


def test_skip_bad_keeps_the_good_and_reports_the_bad(tmp_path):
    write(tmp_path / "export.jsonl", "\n".join([json.dumps(GOOD), "[]", json.dumps({**GOOD, "id": "c2"})]) + "\n")
    write(tmp_path / "broken.txt", "Only a title\nand a question\n")
    write(tmp_path / "notes.md", "ignored: not a consultation format")
    result = read_sources([tmp_path], skip_bad=True)
    assert [c.id for c in result.consultations] == ["c1", "c2"]
    assert sorted((e.field, e.line) for e in result.skipped) == [("asker", 2), ("line", 2)]
    assert [p.name for p in map(lambda s: __import__("pathlib").Path(s), result.ignored_files)] == ["notes.md"]


def test_jsonl_round_trips_every_field(tmp_path):
    record = {
        **GOOD, "title": "Knee pain", "question_title": "Knee?", "asker": "A, 30 male.", "ask_date": "2020/01/02",
        "doctor": "Who", "reply_date": "2020/01/03", "more_info": "More.", "url": "https://example.org/c1",
        "excerpt": False, "panel": [{"title": "Other", "id": "c9"}],
        "related_faq": [{"topic": "Knee", "department": "Orthopedics"}],
    }
    write(tmp_path / "one.jsonl", json.dumps(record) + "\n")
    (consultation,) = read_sources([tmp_path / "one.jsonl"]).consultations
    data = consultation.to_dict()
    assert data.pop("source") == f"{tmp_path / 'one.jsonl'}:1"
    assert data == record


def test_page_without_reply(tmp_path):
    lines = seed_text().splitlines()
    doctor = lines.index("Dr. Lan Shengxing reply Neurology")
    text = "\n".join(lines[: doctor + 1] + lines[doctor + 4 :])  # the three reply lines removed
    error = error_of(write(tmp_path / "page.txt", text))
    assert (error.line, error.field) == (doctor + 2, "reply")


def test_five_megabyte_question_is_refused(tmp_path):
    path = write(tmp_path / "big.jsonl", json.dumps({"id": "big", "question": "pain " * 1_000_000}) + "\n")
    error = error_of(path)
    assert (error.line, error.field) == (1, "question") and "5,000,000 characters" in str(error)


def test_duplicate_ids_within_one_file(tmp_path):
    path = write(tmp_path / "a.jsonl", json.dumps(GOOD) + "\n" + json.dumps(GOOD) + "\n")
    error = error_of(path)
    assert error.field == "id" and f"{path}:2" in str(error) and f"first read from {path}:1" in str(error)


def test_ids_with_path_characters_are_plain_ids(tmp_path):
    """Ids are never used as file paths: '../../etc/passwd' is just an id."""
    odd = {**GOOD, "id": "../../etc/passwd"}
    (consultation,) = read_sources([write(tmp_path / "odd.jsonl", json.dumps(odd) + "\n")]).consultations
    assert consultation.id == "../../etc/passwd"


def test_query_limits(searcher):
    from index.errors import SimqaError

    with pytest.raises(SimqaError, match="query of 100,000 characters"):
        searcher.search("a" * 100_000)
    with pytest.raises(SimqaError, match="empty query"):
        searcher.search("")


def test_control_characters_are_stripped_from_text_and_refused_in_ids(tmp_path):
    """The one policy where text enters: tab and newline kept, other control characters (a CRLF
    export's CR, ESC, NUL, C1's NEL) stripped from every field but the id, which refuses them."""
    record = {**GOOD, "question": "Line one\r\nline\ttwo \x1b[31mred\x1b[0m\x00", "title": "Tit\x85le",
              "panel": [{"title": "Other\x07", "id": "c2"}]}
    path = write(tmp_path / "export.jsonl", json.dumps(record) + "\n")
    consultation = read_sources([path]).consultations[0]
    assert consultation.question == "Line one\nline\ttwo [31mred[0m"
    assert consultation.title == "Title" and consultation.panel[0].title == "Other"
    write(tmp_path / "bad.jsonl", json.dumps({**GOOD, "id": "c\x851"}) + "\n")
    assert "id contains control characters" in str(error_of(tmp_path / "bad.jsonl"))
