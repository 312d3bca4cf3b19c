"""A key/value cache that grows in place.

transformers' `DynamicLayer` appends each step's keys and values with `torch.cat`, copying the
whole cache of every layer for every token; with eight replies of 500 tokens that copy costs more
than the attention itself. `GrowingLayer` keeps its tensors in a buffer with room to spare and
writes new positions into it; `keys` and `values` are views of the filled part, so everything in
transformers that reads a `DynamicLayer` reads this one the same way.
"""

from typing import Any

import torch
from transformers.cache_utils import Cache, DynamicLayer

SPARE = 256  # positions allocated beyond what is needed when the buffer grows


class GrowingLayer(DynamicLayer):
    def __init__(self, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self._dtype = dtype  # None: the model's

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        super().lazy_initialization(key_states, value_states)
        self._length = 0
        self._key_buffer = self._value_buffer = torch.empty(0)

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        self._write(key_states, value_states)
        return self.content()

    def content(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values, [batch, heads, length, dim] each."""
        assert self.keys is not None and self.values is not None
        return self.keys, self.values

    def replace(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Make `keys`/`values` ([batch, heads, length, dim]) the whole content of the layer."""
        if not self.is_initialized:
            self.lazy_initialization(keys, values)
        self._length = 0
        self._key_buffer = self._value_buffer = torch.empty(0)
        self._write(keys, values)

    def truncate(self, length: int) -> None:
        """Forget every position from `length` on."""
        self._length = length
        self.keys = self._key_buffer[:, :, :length]
        self.values = self._value_buffer[:, :, :length]

    def _write(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        start, end = self._length, self._length + keys.shape[2]
        buffer = self._key_buffer
        if buffer.dim() != 4 or buffer.shape[:2] != keys.shape[:2] or buffer.shape[2] < end:
            shape = (*keys.shape[:2], end + SPARE, keys.shape[3])
            new_keys = keys.new_empty(shape, dtype=self._dtype or keys.dtype)
            new_values = values.new_empty(shape, dtype=self._dtype or values.dtype)
            if start:
                new_keys[:, :, :start] = self._key_buffer[:, :, :start]
                new_values[:, :, :start] = self._value_buffer[:, :, :start]
            self._key_buffer, self._value_buffer = new_keys, new_values
        self._key_buffer[:, :, start:end] = keys
        self._value_buffer[:, :, start:end] = values
        self._length = end
        self.keys = self._key_buffer[:, :, :end]
        self.values = self._value_buffer[:, :, :end]


def growing_cache(config: Any, dtype: torch.dtype | None = None) -> Cache:
    """An empty cache of `GrowingLayer`s for a model with `config`, storing `dtype` (None: the
    model's; float32 where attention runs in float32, so it need not widen the cache each step)."""
    layers = getattr(config, "get_text_config", lambda: config)().num_hidden_layers
    return Cache(layers=[GrowingLayer(dtype) for _ in range(layers)])
