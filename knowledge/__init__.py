"""The FAQ knowledge base: entries in Redis, embeddings, retrieval.

`Embedder` pulls in sentence-transformers, so it is loaded on first access only.
"""

from typing import TYPE_CHECKING, Any

from knowledge.calibration import Calibration
from knowledge.entry import FaqEntry
from knowledge.errors import EntryExists, EntryNotFound, KnowledgeError
from knowledge.files import sample_faq_path
from knowledge.formats import FORMATS, format_entries, parse_entries, read_entries, write_entries
from knowledge.index import Hit, SearchIndex
from knowledge.keys import KnowledgeKeys
from knowledge.query_encoder import OnnxQueries
from knowledge.retriever import Retriever, Thresholds
from knowledge.store import EntryRecord, ImportResult, KnowledgeStore

if TYPE_CHECKING:
    from knowledge.embedder import Embedder

__all__ = [
    "FORMATS",
    "Calibration",
    "Embedder",
    "EntryExists",
    "EntryNotFound",
    "EntryRecord",
    "FaqEntry",
    "Hit",
    "ImportResult",
    "KnowledgeError",
    "KnowledgeKeys",
    "KnowledgeStore",
    "OnnxQueries",
    "Retriever",
    "SearchIndex",
    "Thresholds",
    "format_entries",
    "parse_entries",
    "read_entries",
    "sample_faq_path",
    "write_entries",
]


def __getattr__(name: str) -> Any:
    if name == "Embedder":
        from knowledge.embedder import Embedder

        return Embedder
    raise AttributeError(f"module 'knowledge' has no attribute {name!r}")
