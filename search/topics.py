"""Related FAQ: the topics of a text or of a stored consultation, from three signals.

- names: the topic's names (topic and synonyms) found in the text, word by word after the BM25
  tokenizer, so "tremors" finds "Tremor". A word matches a name word exactly or, from
  FUZZY_CHARS characters on, by rapidfuzz's ratio of at least FUZZY_RATIO ("antiphosoholipid",
  "wieddeman": the consumer spellings the issue lists). A name scores the IDF weight of its words
  found times the fraction of its weight found, so a name found whole beats a longer one found in
  part, and "syndrome" alone finds nothing; a topic scores its best name.
- dense: the query vector's best cosine over the topic's name vectors (index/topics.py stores them).
- votes: the Related FAQ topics of the nearest consultations, as Similar Q&A ranks them, the
  consultation at rank r voting 1 / r (a stored consultation votes for its own topics first);
  a consultation without a list votes for the topics its title names best, as `names` scores
  them (its focus: the issue's "their Related FAQ lists, or their focus").
The default ranks by votes and adds the reciprocal ranks of names and dense (1 / (RRF_K + rank),
RRF_K = 60 as Cormack et al. chose, each signal ranking only the topics it scores): at most
2 / 61, less than one vote from rank 10, so the pages' own lists decide, the text's direct
evidence orders topics voted alike and fills the list after them, and with no votes at all (no
neighbour lists or names a topic) the fusion is RRF of names and dense.
Nothing is fitted: votes alone were the strongest signal on the benchmark and RRF of the other
two beat either of them (benchmarks/README.md, "Related FAQ").
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
from rapidfuzz import fuzz, process
from scipy import sparse

from index.consultation import Consultation
from index.sparse import columns_end_to_end
from index.text import tokenize
from index.topics import StoredTopics, name_texts, topic_key
from index.vectors import inner_products

SIGNALS = ("names", "dense", "votes")
FUZZY_CHARS = 6  # shorter words match exactly only: at 5 letters one typo is another word
FUZZY_RATIO = 85.0  # rapidfuzz ratio, 0..100: 2 edits in 8+8 letters
MIN_COVERAGE = 0.5  # of a name's IDF weight, for the name to count as found
VOTERS = 10  # nearest consultations whose topics vote
TIE_DECIMALS = 9  # name scores run 0..30: rounding noise is 1e-14
RRF_K = 60
TITLES_KEPT = 16_384  # voters' titles whose best-named topics are kept (about 0.5 KB each: 8 MB at most)


@dataclass
class TopicHit:
    """One suggested topic: as a page lists it (topic, department, url), its score and each signal's."""

    topic: str
    department: str
    url: str
    rank: int
    score: float
    scores: dict[str, float | None]

    def to_dict(self) -> dict:
        return asdict(self)


class TopicFinder:
    """The topics of one index, ready to rank against a query; name matching is set up on first use."""

    def __init__(self, stored: StoredTopics) -> None:
        self.topics = stored.topics
        self.vectors = stored.vectors
        self._name_topic = stored.name_topic
        self._name_starts = np.flatnonzero(np.r_[True, np.diff(stored.name_topic) != 0]) if len(stored.name_topic) else np.zeros(0, int)
        # A consultation's Related FAQ entry names a topic by its name or a synonym; own names win.
        self._by_key = {topic_key(name): number for number, topic in enumerate(self.topics) for name in topic.synonyms}
        self._by_key.update((topic.key, number) for number, topic in enumerate(self.topics))
        self._lock = threading.Lock()
        self._names: _NameMatcher | None = None
        self._title_topics = lru_cache(maxsize=TITLES_KEPT)(self._named_best)

    def __len__(self) -> int:
        return len(self.topics)

    def signals(self, text: str, vector: np.ndarray | None, voters: list[Consultation]) -> dict[str, np.ndarray]:
        """Each signal's score of every topic (NaN: nothing to say about it)."""
        out = {"names": self._name_matcher().scores(tokenize(text))}
        if vector is not None:
            out["dense"] = np.maximum.reduceat(inner_products(self.vectors, vector), self._name_starts)
        votes = np.zeros(len(self.topics))
        for rank, consultation in enumerate(voters, 1):
            for number in self._topics_of(consultation):
                votes[number] += 1.0 / rank
        out["votes"] = votes
        return {signal: np.where(values > 0, values, np.nan) if signal != "dense" else values for signal, values in out.items()}

    def rank(self, scores: dict[str, np.ndarray], k: int, signals: tuple[str, ...] = SIGNALS) -> list[TopicHit]:
        """The k best topics by the fusion of `signals` (the module docstring; one signal: its own score)."""
        active = [s for s in signals if s in scores]
        if not active or not len(self.topics):
            return []
        if len(active) == 1:
            fused = scores[active[0]]
        else:
            fused = np.nan_to_num(scores["votes"]) if "votes" in active else np.zeros(len(self.topics))
            for signal in (s for s in active if s != "votes"):  # in a fixed order: sums round alike in every process
                fused += _reciprocal_ranks(scores[signal])
            fused[fused == 0] = np.nan
        found = np.flatnonzero(~np.isnan(fused))
        order = found[np.lexsort((found, -fused[found]))][:k]
        return [TopicHit(self.topics[n].topic, self.topics[n].department, self.topics[n].url, at + 1, float(fused[n]),
                         {s: None if np.isnan(v[n]) else float(v[n]) for s, v in scores.items()})
                for at, n in enumerate(order)]

    def _topics_of(self, consultation: Consultation) -> frozenset[int]:
        """The topics a consultation votes for: those of its Related FAQ list, or without a list
        the topics its title names best (its focus, as a site's page titles name one)."""
        if consultation.related_faq:
            return frozenset(self._by_key.get(topic_key(entry.topic)) for entry in consultation.related_faq) - {None}
        return self._title_topics(consultation.title)

    def _named_best(self, title: str) -> frozenset[int]:
        """The topics a title names best (none if it names none); kept by title (`_title_topics`):
        the same neighbours vote for many queries, and matching names costs ~0.2 ms a title."""
        named = self._name_matcher().scores(tokenize(title))
        return frozenset(np.flatnonzero(named == named.max()).tolist()) if len(named) and named.max() > 0 else frozenset()

    def _name_matcher(self) -> "_NameMatcher":
        with self._lock:
            if self._names is None:
                self._names = _NameMatcher(name_texts(self.topics), self._name_topic, len(self.topics))
        return self._names


class _NameMatcher:
    """Topic names as a sparse matrix of their words' IDF weights, for matching a text's words.
    Kept by word (CSC): a text reads the columns of its own words only, not all 32,000 names."""

    def __init__(self, names: list[str], name_topic: np.ndarray, topics: int) -> None:
        tokens = [list(dict.fromkeys(tokenize(n))) for n in names]
        self.vocabulary = sorted({t for ts in tokens for t in ts})
        self._index = {t: i for i, t in enumerate(self.vocabulary)}
        self._long = [t for t in self.vocabulary if len(t) >= FUZZY_CHARS]
        self._long_index = np.array([self._index[t] for t in self._long], dtype=np.int64)
        rows = np.repeat(np.arange(len(tokens)), [len(ts) for ts in tokens])
        columns = np.array([self._index[t] for ts in tokens for t in ts], dtype=np.int64)
        df = np.bincount(columns, minlength=len(self.vocabulary))
        idf = np.log(1.0 + len(names) / np.maximum(df, 1))
        self.weights = sparse.csc_matrix((idf[columns], (rows, columns)), shape=(len(names), len(self.vocabulary)))
        self.totals = np.asarray(self.weights.sum(axis=1)).ravel()
        self._name_topic, self._topics = name_topic, topics

    def scores(self, tokens: list[str]) -> np.ndarray:
        """Each topic's best name score for these query tokens (0: no name found)."""
        words = list(dict.fromkeys(tokens))
        found = {self._index[t]: 1.0 for t in words if t in self._index}
        unknown = [t for t in words if t not in self._index and len(t) >= FUZZY_CHARS]
        if unknown and self._long:
            ratios = process.cdist(unknown, self._long, scorer=fuzz.ratio, score_cutoff=FUZZY_RATIO, dtype=np.uint8).max(axis=0)
            for at in np.flatnonzero(ratios):
                column = int(self._long_index[at])
                found[column] = max(found.get(column, 0.0), ratios[at] / 100.0)
        out = np.zeros(self._topics)
        if not found:
            return out
        # the found words' columns end to end: a name's sum adds its found words' weights
        columns = sorted(found)
        rows, weights, _ = columns_end_to_end(self.weights.indptr, self.weights.indices, self.weights.data, columns,
                                              [found[c] for c in columns])
        matched = np.bincount(rows, weights=weights, minlength=len(self.totals))
        names = np.flatnonzero(matched)
        coverage = matched[names] / self.totals[names]
        kept = coverage >= MIN_COVERAGE
        np.maximum.at(out, self._name_topic[names[kept]], matched[names[kept]] * coverage[kept])
        # names equal but for the order their words were added tie, and ties go by topic order
        return np.round(out, TIE_DECIMALS)


def _reciprocal_ranks(values: np.ndarray) -> np.ndarray:
    """1 / (RRF_K + rank) of each topic the signal scores (ties share the better rank), 0 elsewhere."""
    out = np.zeros(len(values))
    scored = np.flatnonzero(~np.isnan(values))
    if len(scored):
        ordered = -values[scored]
        ranks = np.searchsorted(np.sort(ordered), ordered, side="left") + 1
        out[scored] = 1.0 / (RRF_K + ranks)
    return out
