"""Token ids to text as they are generated: whole characters only, cut at a stop string."""

from collections.abc import Sequence
from typing import Any


class ReplyText:
    """Turns a growing list of token ids into text chunks that are safe to show.

    A chunk never ends inside a multi-byte character and never shows the start of what may turn
    out to be a stop string; once a stop string appears the reply ends just before it.
    """

    def __init__(self, tokenizer: Any, stops: Sequence[str] = ()) -> None:
        self._tokenizer = tokenizer
        self._stops = [s for s in stops if s]
        self._shown = ""
        self.stopped = False  # a stop string was generated

    def update(self, token_ids: Sequence[int], final: bool = False) -> str:
        """The text to show now for the reply so far; with `final`, everything that is left."""
        text = self._tokenizer.decode(token_ids, skip_special_tokens=True)
        end = len(text)
        for stop in self._stops:
            at = text.find(stop)
            if at != -1 and at < end:
                end, self.stopped = at, True
        if not self.stopped and not final:
            if text.endswith("\ufffd"):  # the rest of a character is still to come
                end = len(text.rstrip("\ufffd"))
            end -= self._held_back(text[:end])
        if not text.startswith(self._shown):  # decoding revised earlier text: show only what is new
            self._shown = text[: len(self._shown)]
        chunk = text[len(self._shown) : end] if end > len(self._shown) else ""
        self._shown += chunk
        return chunk

    def _held_back(self, text: str) -> int:
        """How many trailing characters could be the beginning of a stop string."""
        held = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(text)), held, -1):
                if text.endswith(stop[:size]):
                    held = size
                    break
        return held
