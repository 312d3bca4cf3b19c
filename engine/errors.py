class EngineError(Exception):
    """Root of every error the engine raises; the message says what to do about it."""


class ModelBusy(EngineError):
    """Too many requests are waiting for the model; `retry_after_s` says when to try again."""

    def __init__(self, waiting: int, retry_after_s: int) -> None:
        super().__init__(
            f"The model is busy ({waiting} requests waiting); retry in {retry_after_s} s."
        )
        self.retry_after_s = retry_after_s


class RemoteBusy(ModelBusy):
    """A remote model server turned the request away (HTTP 429 or 503); `retry_after_s` is its
    Retry-After. A `ModelBusy`, so callers degrade the same way as when the local queue is full."""

    def __init__(self, url: str, status: int, retry_after_s: int) -> None:
        EngineError.__init__(
            self, f"The model server at {url} is busy (HTTP {status}); retry in {retry_after_s} s."
        )
        self.retry_after_s = retry_after_s
