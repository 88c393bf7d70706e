"""Progress reports and cancellation shared by every long-running operation.

A callback receives `Progress` objects; a `CancelToken` set from any thread (a UI button, Ctrl-C, an HTTP
request) makes the operation raise `CancelledError` at its next check point.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from .errors import CancelledError

PreviewFn = Callable[[], np.ndarray]


@dataclass(frozen=True)
class Progress:
    """One report of a long operation to its `progress=` callback, which runs on the working thread: keep it short.

    stage: what runs now: "unwrap", "denoise", "bake", "inpaint", "materials", "upscale"; one call may go through
        several, and each counts its own steps from 0.
    step, total: steps done of the stage's total, in the stage's own unit (sampler steps, views, tiles, phases; the
        unwrap counts seconds against an estimate that grows if exceeded); `fraction` is their ratio.
    message: a few words for a status line (e.g. "projecting views", the upscaler's name), often "".
    preview: denoising only: the current views' clean estimate as (B, h, w, 3) uint8 at latent resolution. A
        callable, so a step costs nothing unless a consumer asks; call it inside the callback (it holds the step's
        device tensors).
    """

    stage: str
    step: int
    total: int
    message: str = ""
    preview: Optional[PreviewFn] = field(default=None, compare=False, repr=False)

    @property
    def fraction(self) -> float:
        return self.step / self.total if self.total else 1.0


ProgressCallback = Callable[[Progress], None]


class CancelToken:
    """Thread-safe flag that asks a running operation to stop."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise CancelledError("Cancelled by the user; nothing was written.")


class Reporter:
    """Bundles the optional callback and token so inner loops make one call per step."""

    def __init__(self, progress: Optional[ProgressCallback], cancel: Optional[CancelToken]) -> None:
        self._progress = progress
        self._cancel = cancel

    def __call__(
        self, stage: str, step: int, total: int, message: str = "", preview: Optional[PreviewFn] = None
    ) -> None:
        """Report, and stop if cancelled (checked again after the callback, which may be what cancels)."""
        if self._cancel is not None:
            self._cancel.raise_if_cancelled()
        if self._progress is not None:
            self._progress(Progress(stage, step, total, message, preview))
            if self._cancel is not None:
                self._cancel.raise_if_cancelled()
