"""Choosing the next token of one conversation from the model's scores."""

from typing import cast

import torch
from transformers import (
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopPLogitsWarper,
)

from engine.chat_model import GenerationParams


class TokenChooser:
    """The per-conversation sampling settings, applied to one row of scores at a time.

    Greedy when the temperature is 0; a seed makes sampling repeatable. The processors are
    transformers' own, so a reply is chosen exactly as `generate` would choose it with the same
    processors (the repetition penalty ignoring the prompt).
    """

    def __init__(self, params: GenerationParams, prompt_length: int) -> None:
        self.greedy = params.temperature <= 0
        processors = LogitsProcessorList()
        if params.repetition_penalty != 1.0:
            # On the reply's own tokens only: a grounded answer copies the FAQ in its prompt.
            processors.append(
                RepetitionPenaltyLogitsProcessor(
                    params.repetition_penalty, prompt_ignore_length=prompt_length
                )
            )
        if not self.greedy:
            processors.append(TemperatureLogitsWarper(params.temperature))
            if params.top_p < 1.0:
                processors.append(TopPLogitsWarper(params.top_p))
        self._processors = processors
        self._generator: torch.Generator | None = None
        if not self.greedy and params.seed is not None:
            self._generator = torch.Generator().manual_seed(params.seed)

    def choose(self, token_ids: torch.Tensor, scores: torch.Tensor) -> int:
        """The next token after `token_ids` (1-D, prompt and reply so far) given `scores` (1-D)."""
        ids = cast(torch.LongTensor, token_ids[None])
        scores = self._processors(ids, scores[None].float())[0]
        if self.greedy:
            return int(scores.argmax())
        probs = torch.softmax(scores, dim=-1)
        return int(torch.multinomial(probs, 1, generator=self._generator))
