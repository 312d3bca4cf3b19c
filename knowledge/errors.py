class KnowledgeError(Exception):
    """Root of every error the knowledge base raises; the message says what is wrong and where."""
