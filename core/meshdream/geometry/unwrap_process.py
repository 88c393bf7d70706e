"""xatlas in a child process, for meshes large enough that unwrapping takes seconds.

xatlas has no progress callback and cannot be interrupted; a thread running it could not be stopped. A child
process can be killed the moment the caller cancels, and while it works the caller gets the elapsed time as
progress. The child runs `xatlas_job.py`, which imports numpy and xatlas only (about 0.1 s of start-up).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import InvalidMeshError
from ..progress import CancelToken, ProgressCallback, Reporter
from . import xatlas_job

POLL_S = 0.05  # how often the cancel token is checked while the child works
SECONDS_PER_FACE = 4e-5  # measured on 2 cores with the large-mesh options (4.8 s for 123k faces): the bar's length
# Drops the current directory from the child's path, loads the job file by path (not the meshdream package).
_CHILD = (
    "import runpy, sys; sys.path[:] = [p for p in sys.path if p]; "
    "runpy.run_path(sys.argv[1])['main'](sys.argv[2], sys.argv[3])"
)


def unwrap_in_child(
    vertices: np.ndarray,
    faces: np.ndarray,
    options: dict,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`xatlas_job.generate` in a child process: progress once a second (stage "unwrap", step = seconds so far),
    and a cancel kills the child within POLL_S and raises CancelledError. Without a Python executable to start
    (an embedded interpreter) it runs in this process, uninterruptible."""
    report = Reporter(progress, cancel)
    estimate = max(1, round(len(faces) * SECONDS_PER_FACE))
    message = f"xatlas, {len(faces):,} faces"
    report("unwrap", 0, estimate, message)
    if not sys.executable:
        return xatlas_job.generate(vertices, faces, options)
    with tempfile.TemporaryDirectory(prefix="meshdream-unwrap-") as tmp:
        source, target, log = (Path(tmp) / name for name in ("in.npz", "out.npz", "stderr.txt"))
        np.savez(source, vertices=np.asarray(vertices, np.float32), faces=np.asarray(faces, np.uint32), **options)
        # The child imports what this process imports (e.g. an add-on's own site folder), from the same places.
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if isinstance(p, str) and p)}
        command = [sys.executable, "-c", _CHILD, xatlas_job.__file__, str(source), str(target)]
        try:
            with open(log, "wb") as err:
                proc = subprocess.Popen(
                    command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err
                )
        except OSError:  # sys.executable is no Python that can be started
            return xatlas_job.generate(vertices, faces, options)
        t0, shown = time.monotonic(), 0
        try:
            while proc.poll() is None:
                if cancel is not None:
                    cancel.raise_if_cancelled()
                seconds = int(time.monotonic() - t0)
                if seconds > shown:
                    shown = seconds
                    report("unwrap", seconds, max(estimate, seconds + 1), message)
                time.sleep(POLL_S)
        finally:
            if proc.poll() is None:  # cancelled (or this thread was interrupted): stop the work for real
                proc.kill()
                proc.wait()
        if proc.returncode != 0:
            lines = log.read_text(errors="replace").strip().splitlines()
            why = lines[-1] if lines else f"exit status {proc.returncode}"
            if proc.returncode < 0:
                why = f"killed by signal {-proc.returncode}" + (", out of memory?" if proc.returncode == -9 else "")
            raise InvalidMeshError(
                f"xatlas could not unwrap the mesh ({len(faces):,} faces: {why}); give it UVs of its own (e.g. "
                "unwrap it in Blender) and load it with unwrap='never', or repair or decimate it."
            )
        with np.load(target) as out:
            result = out["vmap"], out["faces"], out["uv"]
    report("unwrap", max(estimate, shown + 1), max(estimate, shown + 1), message)
    return result
