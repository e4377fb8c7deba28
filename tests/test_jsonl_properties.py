"""Property tests of the JSONL reader, as of the page reader: any bytes give consultations or our
own ParseError (naming file, line and field), never another exception or a hang."""

import json
from dataclasses import asdict

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from index.consultation import Consultation, FaqTopic, PanelLink
from index.errors import ParseError
from index.readers import read_sources

FIELDS = ["id", "question", "title", "reply", "doctor", "panel", "related_faq", "excerpt", "replly"]
VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
                      lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                      max_leaves=8)


def read_or_error(tmp_path, data: bytes) -> None:
    path = tmp_path / "export.jsonl"
    path.write_bytes(data)
    try:
        consultations = read_sources([path]).consultations
    except ParseError as error:
        assert error.path.startswith(str(path)) and error.field and error.line >= 0
        return
    assert all(c.id.strip() and c.question.strip() for c in consultations)
    assert all(c.question.encode("utf-8") and c.id.encode("utf-8") for c in consultations)  # valid Unicode only


@settings(max_examples=200, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_any_bytes(tmp_path, data):
    read_or_error(tmp_path, data)


@settings(max_examples=200, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(st.dictionaries(st.sampled_from(FIELDS), VALUES, max_size=6), max_size=5))
def test_any_json_objects(tmp_path, records):
    read_or_error(tmp_path, "\n".join(json.dumps(r) for r in records).encode("utf-8"))


@settings(max_examples=100, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, categories=["Cs"]) | st.characters(), max_size=4))
def test_surrogate_escapes_in_any_field(tmp_path, text):
    escaped = json.dumps(text)  # \udXXX escapes for lone surrogates
    read_or_error(tmp_path, ('{"id": %s, "question": %s}' % (escaped, escaped)).encode("utf-8"))


CONSULTATIONS = st.builds(
    Consultation, id=st.text(min_size=1), question=st.text(min_size=1), title=st.text(), reply=st.text(),
    excerpt=st.booleans(), panel=st.lists(st.builds(PanelLink, title=st.text(), id=st.text()), max_size=3),
    related_faq=st.lists(st.builds(FaqTopic, topic=st.text(), department=st.text()), max_size=3))


@settings(max_examples=200, deadline=2000)
@given(CONSULTATIONS)
def test_to_dict_is_asdict(consultation):
    """to_dict skips asdict's deep copies, not its result: the store's JSON and the build's
    content digest (an unchanged corpus is not rebuilt) must not change with it."""
    assert list(consultation.to_dict().items()) == list(asdict(consultation).items())
    assert Consultation.from_dict(json.loads(json.dumps(consultation.to_dict()))) == consultation
