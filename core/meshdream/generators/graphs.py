"""CUDA graphs for the denoiser: a whole guided noise prediction (ControlNet, UNet, guidance) replayed as one launch.

At texturing's small batches (one view for `project`, two-view waves for `sequential`, two images per call under
memory="minimal") a denoiser call is a few thousand small kernels and the GPU waits for the CPU that launches
them. A CUDA graph records those launches once and replays them: per step only the latents and the timestep are
copied into the graph's input buffers. Graphs live for one sampling call, so the conditioning they read (prompt
embeddings, depth, masks) stays where it was when they were captured, and their memory is free again for decoding.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from ..errors import MeshDreamWarning
from .base import Generator


class DenoiserGraphs:
    """`generator.predict_noise` for one request, through a CUDA graph per chunk of images where it can be.

    The first call for a chunk runs eagerly (it also runs lazy initialisations a capture must not see); the second
    captures the graph and replays it, and every later call only replays. On other devices, or with
    `generator.cuda_graphs` off, every call is eager. A capture the model does not allow (an op that needs the
    host mid-call) turns graphs off for the rest of the request, with a MeshDreamWarning that says why.
    """

    def __init__(self, generator: Generator, prompt: Any, cond: dict, guidance: float):
        self.generator, self.prompt, self.cond, self.guidance = generator, prompt, cond, guidance
        self.enabled = generator.device.type == "cuda" and generator.cuda_graphs
        self.replays = 0
        self._seen: set[tuple[int, int]] = set()
        self._graphs: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor, torch.Tensor, Any]] = {}
        self._pool = None
        self._stream = torch.cuda.Stream(generator.device) if self.enabled else None

    def _eager(self, latents: torch.Tensor, t: torch.Tensor, index: slice) -> torch.Tensor:
        return self.generator.predict_noise(latents, t, self.prompt, self.cond, index, self.guidance)

    def __call__(self, latents: torch.Tensor, t: torch.Tensor, index: slice) -> torch.Tensor:
        key = (index.start, index.stop)
        if not self.enabled or key not in self._seen:
            self._seen.add(key)
            return self._eager(latents, t, index)
        if key not in self._graphs:
            self._capture(key, latents, t, index)
            if not self.enabled:
                return self._eager(latents, t, index)
        x, tt, out, graph = self._graphs[key]
        x.copy_(latents)
        tt.copy_(t)
        graph.replay()
        self.replays += 1
        return out.clone()  # the next replay overwrites `out`

    def _capture(self, key, latents: torch.Tensor, t: torch.Tensor, index: slice) -> None:
        x, tt = latents.clone(), t.clone()
        graph = torch.cuda.CUDAGraph()
        main = torch.cuda.current_stream(self.generator.device)
        # A capture cannot free the allocator's cached blocks when it needs room (no cudaFree while capturing):
        # hand them back first, or a capped card runs out with the memory of the eager call still cached.
        torch.cuda.empty_cache()
        self._stream.wait_stream(main)
        try:
            # A side stream, as capture requires; "thread_local": the geometry worker thread (prepare_final_bake)
            # may allocate and synchronize on its own stream meanwhile.
            with torch.cuda.stream(self._stream):
                graph.capture_begin(pool=self._pool, capture_error_mode="thread_local")
                try:
                    out = self._eager(x, tt, index)
                finally:
                    graph.capture_end()
        except RuntimeError as e:
            self.enabled = False
            self.release()
            warnings.warn(
                f"{self.generator.name} cannot be captured as a CUDA graph ({e}); it runs without one (slower at "
                "small batches). Set generator.cuda_graphs = False to skip the attempt.",
                MeshDreamWarning,
                stacklevel=3,
            )
            return
        finally:
            main.wait_stream(self._stream)
        self._pool = graph.pool() if self._pool is None else self._pool
        self._graphs[key] = (x, tt, out, graph)

    def release(self) -> None:
        """Free the graphs and their memory pool (before decoding, which needs the memory most)."""
        self._graphs.clear()
        self._pool = None
