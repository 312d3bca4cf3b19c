class ConversationError(Exception):
    """Root of every error the conversation core raises; adapters map it to their channel."""


class StorageUnavailable(ConversationError):
    """Redis cannot be reached; the turn was not taken and nothing was written."""
