"""Jobs run one after another: a `Batch` holds the tasks of one operator, runs each on the chosen backend
(`backends.Run`, a thread) and applies results on the main thread when `tick` is called (by the modal operator's
timer, or a loop in background mode)."""

import bpy

from . import backends, preview
from .scene_io import SceneError


class Batch:
    """Tasks run one after another on the chosen backend; `tick` advances and applies on the main thread."""

    def __init__(self, cfg, tasks):
        self.cfg, self.tasks = cfg, list(tasks)
        self.run, self.applied, self.error, self.cancelled = None, 0, None, False
        self._shown = None  # the views PNG the panel shows

    @property
    def label(self):
        return self.tasks[0].label if self.tasks else "Finishing"

    @property
    def fraction(self):
        return self.run.fraction if self.run else 0.0

    @property
    def stage(self):
        return f"{self.run.stage} {self.run.step}/{self.run.total}" if self.run and self.run.total else "starting"

    def cancel(self):
        self.cancelled = True
        if self.run is not None:
            self.run.cancel()

    def tick(self, context):
        """None while working; then "done", "failed" (see .error) or "cancelled"."""
        while True:
            if self.run is None:
                if self.cancelled or not self.tasks:
                    return self._end("cancelled" if self.cancelled else "done")
                task = self.tasks[0]
                self.run = backends.Run(self.cfg, task.submit, task.include, preview=not bpy.app.background)
            if not self.run.finished:
                self._show(self.run.preview_png)
                return None
            run, task, self.run = self.run, self.tasks.pop(0), None
            if run.state != "done" or self.cancelled:
                task.discard()
                self.error = run.error
                return self._end("failed" if run.state == "failed" else "cancelled")
            try:
                self.tasks[0:0] = task.apply(context, run.result)
            except SceneError as exc:
                self.error = str(exc)
                return self._end("failed")
            self.applied += 1
            self._show(run.preview_png)

    def _show(self, png_b64):
        """Replace the panel's views when the run has newer ones (Run fetches them about once a second)."""
        if png_b64 is not self._shown:
            self._shown = png_b64
            preview.show(png_b64)

    def _end(self, outcome):
        for task in self.tasks:
            task.discard()
        self.tasks.clear()
        return outcome
