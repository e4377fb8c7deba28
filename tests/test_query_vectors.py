"""search/query_vectors.py: a text is encoded once, by one thread, within a bounded size."""

import threading

import numpy as np
import pytest

from search.query_vectors import QueryVectors


class Counting:
    """An encoder that counts its calls and can be held until released."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.started, self.release = threading.Event(), threading.Event()
        self.release.set()

    def __call__(self, text: str) -> np.ndarray:
        self.calls.append(text)
        self.started.set()
        self.release.wait(5)
        return np.full(4, float(len(text)), dtype=np.float32)


def test_a_text_asked_again_is_not_encoded_again_and_its_vector_is_read_only():
    encode, kept = Counting(), QueryVectors(8)
    first = kept.get("muscle twitching", encode)
    again = kept.get("muscle twitching", encode)
    assert encode.calls == ["muscle twitching"] and again is first
    with pytest.raises(ValueError):
        first[0] = 0.0  # one array serves every caller: none may change it
    kept.get("cannot sleep", encode)
    assert encode.calls == ["muscle twitching", "cannot sleep"]


def test_requests_for_a_text_being_encoded_wait_for_that_encoding():
    encode, kept = Counting(), QueryVectors(8)
    encode.release.clear()
    answers = []
    first = threading.Thread(target=lambda: answers.append(kept.get("head pressure", encode)))
    first.start()
    assert encode.started.wait(5)
    second = threading.Thread(target=lambda: answers.append(kept.get("head pressure", encode)))
    second.start()
    second.join(0.2)
    assert second.is_alive()  # waiting for the first thread's encoding, not encoding itself
    encode.release.set()
    first.join(5), second.join(5)
    assert encode.calls == ["head pressure"] and len(answers) == 2 and answers[0] is answers[1]


def test_the_least_recently_asked_text_goes_first_when_full():
    encode, kept = Counting(), QueryVectors(2)
    for text in ("a", "b", "a", "c"):  # "b" is the least recently asked when "c" comes
        kept.get(text, encode)
    assert len(kept) == 2
    kept.get("a", encode), kept.get("c", encode)
    assert encode.calls == ["a", "b", "c"]
    kept.get("b", encode)
    assert encode.calls == ["a", "b", "c", "b"]


def test_a_failed_encoding_raises_and_is_not_kept():
    kept, calls = QueryVectors(8), []

    def failing(text: str) -> np.ndarray:
        calls.append(text)
        raise RuntimeError("encoder crashed")

    for _ in range(2):
        with pytest.raises(RuntimeError, match="encoder crashed"):
            kept.get("neck tension", failing)
    assert calls == ["neck tension", "neck tension"] and len(kept) == 0


def test_size_zero_keeps_nothing():
    encode, kept = Counting(), QueryVectors(0)
    kept.get("x", encode), kept.get("x", encode)
    assert encode.calls == ["x", "x"] and len(kept) == 0
