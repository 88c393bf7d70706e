"""Live previews: denoising reports carry the current views' clean estimate, and watching them changes nothing."""

import meshdream
import numpy as np
import pytest
import torch
from meshdream.generators import GenerationRequest, sample


def _request(n=2, size=32, steps=4):
    depth = torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(0))
    return GenerationRequest(prompts=["red brick"] * n, depth=depth, steps=steps, seed=3)


def _watched(gen, request, hook=None):
    """Sample while asking every report for its preview."""
    seen = []

    def progress(p):
        seen.append((p.step, None if p.preview is None else p.preview()))

    return sample(gen, request, hook=hook, progress=progress), seen


@pytest.mark.parametrize("kind", ["sd15_controlnet", "builtin"])
def test_denoising_reports_carry_previews_and_change_nothing(tiny, kind):
    gen = meshdream.load_generator("builtin" if kind == "builtin" else tiny(kind))
    request = _request()
    out, seen = _watched(gen, request)
    f = gen.latent_factor
    assert [s for s, _ in seen] == list(range(request.steps + 1))
    assert seen[0][1] is None  # nothing is predicted before the first step
    for _, preview in seen[1:]:
        assert preview.shape == (2, 32 // f, 32 // f, 3) and preview.dtype == np.uint8
    torch.testing.assert_close(out, sample(gen, request), rtol=0, atol=0)  # unwatched: the very same images
    if kind == "builtin":  # pixel space: the last clean estimate is the result
        np.testing.assert_allclose(seen[-1][1] / 255, out.permute(0, 2, 3, 1).numpy(), atol=2 / 255)


def test_preview_shows_the_hooks_edit():
    gen = meshdream.load_generator("builtin")
    _, seen = _watched(gen, _request(n=1, steps=3), hook=lambda i, n, x0: torch.ones_like(x0))
    assert (seen[-1][1] == 255).all()  # x0 = 1 everywhere is white
