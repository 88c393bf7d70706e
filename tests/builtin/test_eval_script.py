"""scripts/eval_texture_model.py's judges: the colour-blind input and the periodicity score."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("eval_texture_model", ROOT / "scripts" / "eval_texture_model.py")
ev = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ev)


def _checker(n: int, size: int = 64, period: int = 8) -> torch.Tensor:
    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return ((x // (period // 2) + y // (period // 2)) % 2).float().expand(n, 1, size, size)


def test_the_structure_judge_sees_no_colour():
    """Any colours of the same pattern, brighter or darker, give the judge the same input; a flat colour gives it
    nothing at all."""
    mask = torch.ones(2, 1, 64, 64)
    pattern = _checker(2)
    red = torch.tensor([0.72, 0.16, 0.12])[:, None, None] * pattern + 0.9 * (1 - pattern)
    dim = 0.5 * red + 0.1
    a, b = ev.grey(torch.cat([red, mask], 1)), ev.grey(torch.cat([dim, mask], 1))
    torch.testing.assert_close(a, b, atol=1e-2, rtol=0)
    flat = torch.cat([torch.full((2, 3, 64, 64), 0.4), mask], 1)
    assert ev.grey(flat).abs().max() < 1e-3
    random = ev.grey(torch.cat([red, mask], 1), torch.Generator().manual_seed(0))
    assert random.shape == (2, 1, 64, 64) and (random.std((2, 3)) > 0.5).all()


def test_periodicity_tells_a_pattern_from_noise():
    noise = torch.randn(4, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    smooth = torch.nn.functional.avg_pool2d(noise, 5, 1, 2)
    checker = ev.periodicity(_checker(4) - 0.5)
    assert (checker > 0.3).all() and (ev.periodicity(noise) < 0.05).all() and (ev.periodicity(smooth) < 0.2).all()
