"""Every Redis key the knowledge base uses, in one place."""

from dataclasses import dataclass


@dataclass(frozen=True)
class KnowledgeKeys:
    prefix: str = "answerdesk"

    @property
    def entries(self) -> str:
        """Hash: entry id -> entry JSON."""
        return f"{self.prefix}:kb:{{kb}}:entries"

    @property
    def version(self) -> str:
        """Counter bumped by every change, so every worker knows when to rebuild its index."""
        return f"{self.prefix}:kb:{{kb}}:version"

    def embedding(self, model: str, text_sha256: str) -> str:
        """Bytes: the float32 embedding of one text by one embedder."""
        return f"{self.prefix}:emb:{model}:{text_sha256}"
