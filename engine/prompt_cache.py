"""Keys and values of recent prompts, for later prompts that begin the same way.

Every grounded prompt begins with the same instructions, customers who ask about the same thing
get the same FAQ entries after them, and a session's next prompt repeats its earlier turns. A
prompt's cost grows with its length, so before running one the scheduler looks here for the
longest beginning it shares with a recent prompt of the same adapter, copies the keys and values
of those positions into the new prompt's cache and runs only the rest (vLLM's automatic prefix
caching and llama.cpp's prompt cache do the same). A position's keys and values depend only on
the tokens up to it, so the reply is the one the whole prompt would give, up to the rounding of
products over fewer rows. Entries are kept within a budget of bytes, the least recently used
dropped first; only the decode thread uses the cache.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import torch

KeysValues = tuple[torch.Tensor, torch.Tensor]  # of one layer, [1, heads, length, dim] each
Layers = list[KeysValues]


@dataclass(eq=False)
class _Entry:
    adapter: str
    tokens: torch.Tensor  # [length], the prompt
    layers: Layers

    @property
    def nbytes(self) -> int:
        return sum(k.nbytes + v.nbytes for k, v in self.layers)


class PromptCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: list[_Entry] = []  # least recently used first

    @property
    def nbytes(self) -> int:
        return sum(entry.nbytes for entry in self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries = []

    def longest(self, adapter: str, prompt: torch.Tensor) -> tuple[int, Layers]:
        """How many of `prompt`'s first tokens a recent prompt of `adapter` shared, and their
        keys and values (views: copy before writing). At least the last token is left to run,
        since its logits choose the reply's first token."""
        best, found = 0, None
        for entry in self._entries:
            if entry.adapter == adapter:
                shared = min(_shared(entry.tokens, prompt), len(prompt) - 1)
                if shared > best:
                    best, found = shared, entry
        if found is None:
            return 0, []
        self._touch(found)
        return best, [(k[:, :, :best], v[:, :, :best]) for k, v in found.layers]

    def add(self, adapter: str, prompt: torch.Tensor, layers: Sequence[KeysValues]) -> None:
        """Keep `prompt`'s keys and values (`layers`: per layer, keys and values at least the
        prompt's length long; copied)."""
        length = len(prompt)
        for entry in list(self._entries):
            if entry.adapter != adapter:
                continue
            shared = _shared(entry.tokens, prompt)
            if shared == length:  # an entry already holds all of it
                self._touch(entry)
                return
            if shared == len(entry.tokens):  # the new prompt holds all of that entry
                self._entries.remove(entry)
        kept = [(k[:, :, :length].clone(), v[:, :, :length].clone()) for k, v in layers]
        entry = _Entry(adapter, prompt.clone(), kept)
        if entry.nbytes > self.max_bytes:
            return
        self._entries.append(entry)
        while self.nbytes > self.max_bytes:
            self._entries.pop(0)

    def _touch(self, entry: _Entry) -> None:
        self._entries.remove(entry)
        self._entries.append(entry)


def _shared(a: torch.Tensor, b: torch.Tensor) -> int:
    """How many first tokens `a` and `b` have in common."""
    n = min(len(a), len(b))
    differ = (a[:n] != b[:n]).nonzero()
    return int(differ[0, 0]) if len(differ) else n
