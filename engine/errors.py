class EngineError(Exception):
    """Root of every error the engine raises; the message says what to do about it."""


class ModelBusy(EngineError):
    """Too many requests are waiting for the model; `retry_after_s` says when to try again."""

    def __init__(self, waiting: int, retry_after_s: int) -> None:
        super().__init__(
            f"The model is busy ({waiting} requests waiting); retry in {retry_after_s} s."
        )
        self.retry_after_s = retry_after_s
