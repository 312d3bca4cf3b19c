"""The FAQ knowledge base: entries in Redis, embeddings, retrieval.

`Embedder` pulls in sentence-transformers, so it is loaded on first access only.
"""

from typing import TYPE_CHECKING, Any

from knowledge.entry import FaqEntry
from knowledge.errors import KnowledgeError
from knowledge.files import read_jsonl, sample_faq_path
from knowledge.keys import KnowledgeKeys
from knowledge.retriever import Hit, Retriever
from knowledge.store import KnowledgeStore

if TYPE_CHECKING:
    from knowledge.embedder import Embedder

__all__ = [
    "Embedder",
    "FaqEntry",
    "Hit",
    "KnowledgeError",
    "KnowledgeKeys",
    "KnowledgeStore",
    "Retriever",
    "read_jsonl",
    "sample_faq_path",
]


def __getattr__(name: str) -> Any:
    if name == "Embedder":
        from knowledge.embedder import Embedder

        return Embedder
    raise AttributeError(f"module 'knowledge' has no attribute {name!r}")
