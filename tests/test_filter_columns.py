"""The columns filters compare (index/filter_columns.py): encoded once, saved, memory-mapped, and
answering as the values they were encoded from."""

from __future__ import annotations

import numpy as np

from index.filter_columns import FilterColumns

DEPARTMENTS = ["Neurology", "neurology ", "Cardiology", "Internal  Medicine", "Cardiology"]
DOCTORS = ["Dr. Gao Chunde", "gao  chunde", "Dr Li Wei", "Li Wei", "Dr. Ana Ruiz"]
ASK_DATES = ["2015-03-01", "", "2016-12-31", "2017-01-01", "2015-02-28"]
SOURCES = ["/data/pages/a.html", "/data/pages/b.html", "site.jsonl", "C:\\dumps\\site.jsonl", "/data/other/a.html"]


def rows(mask: np.ndarray) -> list[int]:
    return np.flatnonzero(mask).tolist()


def test_saved_columns_are_mapped_and_answer_as_encoded(tmp_path):
    encoded = FilterColumns.encode(DEPARTMENTS, DOCTORS, ASK_DATES, SOURCES)
    encoded.write(tmp_path / "filters")
    opened = FilterColumns.open(tmp_path / "filters")
    assert isinstance(opened.codes, np.memmap) and opened.codes.dtype == np.int32 and len(opened) == 5
    for columns in (encoded, opened):
        assert rows(columns.allowed(department="NEUROLOGY")) == [0, 1]
        assert rows(columns.allowed(department="internal medicine")) == [3]
        assert rows(columns.allowed(doctor="Dr. Gao  Chunde")) == [0, 1]
        assert rows(columns.allowed(doctor="li wei", department="cardiology")) == [2]
        # inclusive bounds; a row without an ask date is left out by either bound
        assert rows(columns.allowed(since="2015-03-01")) == [0, 2, 3]
        assert rows(columns.allowed(until="2015-03-01")) == [0, 4]
        assert rows(columns.allowed(since="2016-01-01", until="2016-12-31")) == [2]
        # a source by its path as indexed or by its file name
        assert rows(columns.allowed(source="a.html")) == [0, 4]
        assert rows(columns.allowed(source="/data/pages/a.html")) == [0]
        assert rows(columns.allowed(source="site.jsonl")) == [2, 3]
        assert rows(columns.allowed()) == [0, 1, 2, 3, 4]


def test_a_value_no_row_has_allows_nothing(tmp_path):
    columns = FilterColumns.encode(DEPARTMENTS, DOCTORS, ASK_DATES, SOURCES)
    for values in ({"department": "Oncology"}, {"department": "A"}, {"department": "zzz"}, {"doctor": ""},
                   {"source": "pages"}, {"since": "2020-01-01"}, {"until": "1999-12-31"}):
        assert rows(columns.allowed(**values)) == []


def test_no_rows(tmp_path):
    FilterColumns.encode([], [], [], []).write(tmp_path / "filters")
    opened = FilterColumns.open(tmp_path / "filters")
    assert len(opened) == 0 and rows(opened.allowed(department="Neurology", since="2015-01-01")) == []


def test_values_beyond_ascii_match_as_typed(tmp_path):
    FilterColumns.encode(["Neurología", "神经内科", "Neurolog"], ["Dr. Müller", "Dr. 高春德", "Dr. Muller"], ["", "", ""],
                         ["/páginas/ä.html", "/p/b.html", "/p/c.html"]).write(tmp_path / "filters")
    columns = FilterColumns.open(tmp_path / "filters")
    assert rows(columns.allowed(department="NEUROLOGÍA")) == [0]
    assert rows(columns.allowed(department="神经内科")) == [1]
    assert rows(columns.allowed(doctor="müller")) == [0] and rows(columns.allowed(doctor="高春德")) == [1]
    assert rows(columns.allowed(source="ä.html")) == [0]
