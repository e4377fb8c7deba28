"""simqa's indexer: read consultations, build an index directory (see build.build_index)."""

from index import generations, sharded
from index.build import BuildConfig, build_index
from index.consultation import Consultation, FaqTopic, PanelLink
from index.errors import IndexFormatError, ParseError, SimqaError
from index.readers import ReadResult, read_sources
from index.update import update_index

__all__ = [
    "BuildConfig",
    "Consultation",
    "FaqTopic",
    "IndexFormatError",
    "PanelLink",
    "ParseError",
    "ReadResult",
    "SimqaError",
    "build_index",
    "generations",
    "read_sources",
    "sharded",
    "update_index",
]
