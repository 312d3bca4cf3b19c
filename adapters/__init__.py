"""The edges of answerdesk: web API, command line, and the composition root that wires the core."""

from adapters.settings import Settings

__all__ = ["Settings"]
