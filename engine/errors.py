class EngineError(Exception):
    """Root of every error the engine raises; the message says what to do about it."""
