"""Property tests of the page reader: any text gives consultations or our own ParseError."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from index.errors import ParseError
from index.readers.page import read_page
from tests.conftest import SEED_000, SEEDS

SEED = (SEEDS / f"{SEED_000}.txt").read_text(encoding="utf-8")
LINES = SEED.splitlines()
MARKERS = ["Share to:", "More Info", "Similar Q&A", "Related FAQ", "[Read More]", "Reply Date: 2020/01/01",
           "A, 30 male. Ask Date: 2020/01/01", "Dr. Who reply Neurology", "(Neurology)", "", "   "]


def parse_or_error(text: str) -> None:
    try:
        page, excerpts = read_page("page.txt", text)
    except ParseError as error:
        assert error.path == "page.txt" and error.field and error.line >= 0
        return
    assert page.question and page.doctor and page.reply and page.reply_date is not None
    assert all(e.excerpt and e.question for e in excerpts)
    assert [link.id for link in page.panel] == [e.id for e in excerpts]


@settings(max_examples=300, deadline=1000, suppress_health_check=[HealthCheck.too_slow])
@given(st.text())
def test_any_text(text):
    parse_or_error(text)


@settings(max_examples=300, deadline=1000)
@given(st.lists(st.one_of(st.sampled_from(LINES), st.sampled_from(MARKERS), st.text(max_size=40)), max_size=80))
def test_shuffled_and_mutated_page_lines(lines):
    parse_or_error("\n".join(lines))


@settings(max_examples=100, deadline=1000)
@given(st.integers(0, len(SEED)), st.integers(0, 200))
def test_seed_page_cut_anywhere(start, length):
    parse_or_error(SEED[:start] + SEED[start + length :])
