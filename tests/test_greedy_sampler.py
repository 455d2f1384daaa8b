"""The shared sampler's greedy pick (numpy's argmax, for speed) answers as torch.argmax does."""

from __future__ import annotations

import pytest
import torch

from workbench.textgen.sampler import Sampler


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_greedy_equals_torch_argmax(dtype: torch.dtype) -> None:
    greedy = Sampler(temperature=0.0)
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        logits = (torch.randn(49152, generator=gen) * 4).to(dtype)
        assert greedy(logits) == int(torch.argmax(logits))
        assert greedy(logits[None, :]) == int(torch.argmax(logits))  # [1, vocab] too


def test_greedy_ties_and_nan_as_torch() -> None:
    greedy = Sampler(temperature=None)
    tied = torch.tensor([1.0, 5.0, 3.0, 5.0])
    assert greedy(tied) == int(torch.argmax(tied)) == 1  # the first of equal maxima
    with_nan = torch.tensor([1.0, 9.0, float("nan"), 2.0])
    assert greedy(with_nan) == int(torch.argmax(with_nan)) == 2
    masked = torch.tensor([float("-inf"), 0.5, float("-inf")])
    assert greedy(masked) == 1
