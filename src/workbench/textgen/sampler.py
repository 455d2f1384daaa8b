"""Picking the next token from logits: one sampler for every in-process runtime.

Greedy (argmax) when the temperature is 0 or unset; otherwise temperature, then top-k, then top-p
(the smallest prefix of tokens whose probability reaches `top_p`, always at least one), then a draw
from a `torch.Generator` seeded from `seed`, so the same seed gives the same answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = ["Sampler", "apply_repetition_penalty"]


@dataclass
class Sampler:
    """Settings plus the generator they need; call it with a `[vocab]` (or `[1, vocab]`) logits tensor."""

    temperature: float | None = 0.0
    top_k: int | None = 0
    top_p: float | None = 1.0
    seed: int | None = None
    _generator: torch.Generator | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.temperature is not None and self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise ValueError("top_p must be in (0, 1]")
        if self.top_k is not None and self.top_k < 0:
            raise ValueError("top_k must be >= 0")
        if not self.greedy:
            self._generator = torch.Generator()
            self._generator.manual_seed(self.seed if self.seed is not None else torch.seed())

    @property
    def greedy(self) -> bool:
        return not self.temperature

    def __call__(self, logits: torch.Tensor) -> int:
        """The id of the next token."""
        scores = logits.reshape(-1)
        if self.greedy:
            # numpy's argmax: 5 us on 49k logits against torch.argmax's 57 us (op dispatch), paid on
            # every token; the same answer (the first of equal maxima; a NaN wins, as in torch)
            return int(np.argmax(scores.detach().float().cpu().numpy()))
        scores = scores.float() / float(self.temperature or 1.0)
        if self.top_k and self.top_k < scores.shape[-1]:
            kth = torch.topk(scores, self.top_k).values[-1]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        if self.top_p is not None and self.top_p < 1.0:
            ordered, order = torch.sort(scores, descending=True)
            probabilities = torch.softmax(ordered, dim=-1)
            drop = (probabilities.cumsum(-1) - probabilities) >= self.top_p  # keep the token that crosses p
            ordered = ordered.masked_fill(drop, float("-inf"))
            scores = torch.full_like(scores, float("-inf")).scatter(0, order, ordered)
        probabilities = torch.softmax(scores, dim=-1)
        return int(torch.multinomial(probabilities, 1, generator=self._generator))


def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL-style penalty: divide positive and multiply negative logits of tokens already present."""
    picked = logits[seen]
    logits = logits.clone()
    logits[seen] = torch.where(picked > 0, picked / penalty, picked * penalty)
    return logits
