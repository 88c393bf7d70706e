"""Work the preferences start (Check Installation, Set up local worker) run off Blender's main thread, like jobs:
a function on a daemon thread that reports through its `Chore`, whose subprocesses are killed on cancel or timeout,
so a Python that hangs never freezes Blender. A `bpy.app.timers` callback redraws the UI while one runs and hands
the outcome to `on_done` on the main thread (the only place bpy data may be written)."""

import os
import subprocess
import threading
import time

from .state import STATE


class ChoreError(Exception):
    """A step failed; the message is the one sentence the user sees (what happened and what to do next)."""


class Chore:
    """`work(chore)` runs on a thread and returns the result or raises ChoreError; `status` (the step), `detail`
    (e.g. the package being installed) and `fraction` are its progress, `lines` what it found. `state` ends as
    done, failed or cancelled."""

    def __init__(self, title: str, work, on_done=None) -> None:
        self.title, self.status, self.detail, self.fraction, self.lines = title, "starting", "", 0.0, []
        self.state, self.result, self.error = "running", None, None
        self.cancelled = threading.Event()
        self.on_done = on_done  # called with the chore on the main thread once it is over
        self._process = None
        self._thread = threading.Thread(target=self._main, args=(work,), name="meshdream-chore", daemon=True)
        self._thread.start()

    @property
    def finished(self) -> bool:
        return self.state != "running"

    def cancel(self) -> None:
        self.cancelled.set()
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()

    def join(self, timeout=None) -> None:
        self._thread.join(timeout)

    def run(self, args, timeout: float, what: str, env=None, on_line=None) -> str:
        """Run a command, killed after `timeout` s or on cancel; its output (stdout and stderr) if it exits 0.
        on_line(line) sees each output line as it comes (progress). Failures raise ChoreError naming `what`."""
        if self.cancelled.is_set():
            raise ChoreError("Cancelled.")
        try:
            process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
                env=env,
            )
        except OSError as exc:
            raise ChoreError(f"Cannot run {args[0]} ({exc.strerror}); {what}") from None
        self._process = process
        output = []
        reader = threading.Thread(target=self._read, args=(process, output, on_line), daemon=True)
        reader.start()
        deadline = time.monotonic() + timeout
        while process.poll() is None:
            if self.cancelled.is_set() or time.monotonic() > deadline:
                process.kill()
                process.wait()
                reader.join(1)
                if self.cancelled.is_set():
                    raise ChoreError("Cancelled.")
                raise ChoreError(f"{args[0]} did not answer within {timeout:.0f} s and was stopped; {what}")
            time.sleep(0.05)
        reader.join(5)
        self._process = None
        text = "".join(output)
        if process.returncode:
            last = next((line for line in reversed(text.splitlines()) if line.strip()), "no output")
            raise ChoreError(f"{last.strip()[:200]} (exit code {process.returncode}); {what}")
        return text

    @staticmethod
    def _read(process, output, on_line) -> None:
        for line in process.stdout:
            output.append(line)
            if on_line is not None:
                on_line(line.rstrip())

    def _main(self, work) -> None:
        try:
            self.result = work(self)
            self.state = "cancelled" if self.cancelled.is_set() else "done"
        except ChoreError as exc:
            self.error, self.state = str(exc), "cancelled" if self.cancelled.is_set() else "failed"
        except Exception as exc:  # a bug must end up as a report, not a thread dying silently
            self.error, self.state = f"{type(exc).__name__}: {exc}", "failed"
        self.fraction = 1.0 if self.state == "done" else self.fraction


def start(title: str, work, on_done=None) -> Chore:
    """Start a chore (one at a time) and the timer that watches it; returns at once."""
    STATE.chore = Chore(title, work, on_done)
    _watch_soon()
    return STATE.chore


def _watch_soon() -> None:
    try:
        import bpy

        if not bpy.app.timers.is_registered(watch):
            bpy.app.timers.register(watch, first_interval=0.1)
    except ImportError:  # outside Blender (not used by the add-on)
        pass


def watch():
    """The timer: redraw when the progress changed (a viewport redraw is not free: software GL draws it on the
    CPU the install needs); once the chore is over, run its on_done here, on the main thread."""
    chore = STATE.chore
    if chore is None:
        return None
    if not chore.finished:
        shown = (chore.status, chore.detail, round(100 * chore.fraction))
        if shown != _SHOWN[0]:
            _SHOWN[0] = shown
            _status_bar(f"MeshDream: {chore.status} ({shown[2]}%)  {chore.detail}")
            _redraw()
        return 0.2
    _SHOWN[0] = None
    _status_bar(None)
    if chore.on_done is not None:
        on_done, chore.on_done = chore.on_done, None
        on_done(chore)
    _redraw()
    return None


_SHOWN = [None]  # the progress last drawn


def _redraw() -> None:
    import bpy

    for window in getattr(bpy.context.window_manager, "windows", []):
        for area in window.screen.areas:
            if area.type in ("VIEW_3D", "PREFERENCES"):
                area.tag_redraw()


def _status_bar(text) -> None:
    """Progress in the status bar of each window (None gives the bar back to Blender)."""
    import bpy

    for window in getattr(bpy.context.window_manager, "windows", []):
        try:
            with bpy.context.temp_override(window=window):
                bpy.context.workspace.status_text_set(text)
        except (AttributeError, RuntimeError, TypeError):  # no workspace (background mode), or Blender < 3.2
            pass


def clean_env() -> dict:
    """The environment for a Python that is not Blender's: without variables that would point it at other
    packages than its own (Blender builds may set them for their bundled Python)."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONNOUSERSITE")}
