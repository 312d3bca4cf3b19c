class KnowledgeError(Exception):
    """Root of every knowledge-base error; the message says what is wrong and what to do."""


class EntryNotFound(KnowledgeError):
    """No entry (or no such version of it) exists."""


class EntryExists(KnowledgeError):
    """An entry with that id already exists."""
