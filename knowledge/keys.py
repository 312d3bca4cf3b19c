"""Every Redis key the knowledge base uses, in one place.

All keys of one knowledge base share the `{kb}` hash tag, so a transaction over them stays on one
Redis Cluster slot.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class KnowledgeKeys:
    prefix: str = "answerdesk"

    @property
    def entries(self) -> str:
        """Hash: entry id -> current record JSON (entry, version, created, updated)."""
        return f"{self.prefix}:kb:{{kb}}:entries"

    def history(self, entry_id: str) -> str:
        """Hash: version -> record JSON of every version of one entry (deletions included)."""
        return f"{self.prefix}:kb:{{kb}}:history:{entry_id}"

    @property
    def version(self) -> str:
        """Counter bumped by every change, so every worker knows when to update its index."""
        return f"{self.prefix}:kb:{{kb}}:version"

    @property
    def changes(self) -> str:
        """Stream of changes (kb version, entry id or `*` for a whole replacement)."""
        return f"{self.prefix}:kb:{{kb}}:changes"

    @property
    def calibration(self) -> str:
        """String: the thresholds `kb calibrate` chose for this knowledge base, as JSON."""
        return f"{self.prefix}:kb:{{kb}}:calibration"

    def embedding(self, model: str, text_sha256: str) -> str:
        """Bytes: the float32 embedding of one text by one embedder."""
        return f"{self.prefix}:emb:{model}:{text_sha256}"
