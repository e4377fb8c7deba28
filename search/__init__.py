"""simqa's query layer: `Searcher.open(DIR)` then `search(text)` or `similar(id)`."""

from search.fusion import MODES, Fusion
from search.searcher import Hit, Searcher

__all__ = ["MODES", "Fusion", "Hit", "Searcher"]
