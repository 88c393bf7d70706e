"""Where jobs run. Every backend is a `client.Client`, the standard-library-only client of `meshdream serve`, so
Blender's Python never needs torch: a local worker process started on demand (the default), a server thread in
Blender's own process (when the core imports here), or a remote server. Jobs are waited for on a thread (`Run`);
Blender's main thread only reads its fields."""

import os
import socket
import subprocess
import threading
import time
from typing import NamedTuple, Optional

from .chores import ChoreError

try:
    from .vendor import client  # the copy `build.py addon` puts into the zip
except ImportError:  # the source tree, where the core itself is importable
    from meshdream import client

ClientError = client.ClientError
BACKENDS = [
    ("WORKER", "Local Worker", "Start `meshdream serve` from the Python below when needed (recommended)"),
    ("IN_PROCESS", "In Blender", "Run the core inside Blender's own Python (it must have meshdream[server])"),
    ("REMOTE", "Remote Server", "Send jobs to a MeshDream server at a URL"),
]
WORKER_DIED = (
    "The MeshDream worker stopped during the job (it crashed or ran out of memory); run the job again to start a "
    "new one."
)
PREVIEW_EVERY_S = 1.0  # how often a running job's live views are fetched (the status polls in between stay small)
_lock = threading.Lock()
_in_process = None  # the Client of the server thread started inside this Blender
_workers = []  # the worker processes this Blender started (client.ensure_server reaps each when it exits)


def config(prefs) -> dict:
    """The preferences as plain values, read on the main thread (bpy data must not be read from other threads)."""
    if prefs is None:
        return {"backend": "WORKER", "python": "", "port": 7860, "url": "", "token": ""}
    return {
        "backend": prefs.backend,
        "python": os.path.expanduser(prefs.python),
        "port": prefs.port,
        "url": prefs.url,
        "token": prefs.token,
    }


def connect(cfg: dict, cancel=None) -> "client.Client":
    """A client whose server answers; may start one (seconds), so call it off the main thread. cancel: an Event
    that stops a worker still starting."""
    if cfg["backend"] == "REMOTE":
        if not cfg["url"]:
            raise ClientError("No server URL is set; enter it in the MeshDream add-on preferences.")
        c = client.Client(cfg["url"], token=cfg["token"] or None)
        c.health()
        return c
    if cfg["backend"] == "IN_PROCESS":
        return _start_in_process()
    if not cfg["python"]:
        raise ClientError("MeshDream is not set up yet: press Set up local worker in the MeshDream panel.")
    with _lock:  # one start at a time: a check and a job starting together must not start two workers
        c = client.ensure_server(python=cfg["python"], port=cfg["port"], cancel=cancel)
        if c.process is not None:
            _workers.append(c.process)
    return c


def _core():
    """The MeshDream core as imported in this Python, or a ClientError saying how to get it."""
    try:
        import meshdream
        import meshdream.server  # noqa: F401  (FastAPI, uvicorn)
    except ImportError as exc:
        raise ClientError(
            f"The core does not import in Blender's Python ({exc}); install it with "
            f"`{_blender_python()} -m pip install 'meshdream[server]'`, or use the Local Worker backend."
        ) from None
    if not hasattr(meshdream, "texture_mesh"):  # a legacy add-on install is itself the module `meshdream`
        raise ClientError("Blender imports this add-on as `meshdream`, hiding the core; install it as an extension.")
    return meshdream


def _blender_python() -> str:
    import sys

    return sys.executable


def _start_in_process() -> "client.Client":
    global _in_process
    with _lock:
        if _in_process is None:
            _core()
            from meshdream.server import serve

            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            thread = threading.Thread(
                target=serve,
                kwargs={"port": port, "log_level": "warning", "allow_paths": True},  # loopback, this user's own
                name="meshdream-server",
                daemon=True,
            )
            thread.start()
            c = client.Client(f"http://127.0.0.1:{port}")
            deadline = time.monotonic() + 60
            while True:
                try:
                    c.health()
                    break
                except ClientError:
                    if not thread.is_alive() or time.monotonic() > deadline:
                        raise ClientError("The in-process MeshDream server did not start; see the console.") from None
                    time.sleep(0.05)
            _in_process = c
        return _in_process


class Check(NamedTuple):
    """What Check Installation found: every branch of `check` returns one."""

    ok: bool
    lines: list  # what works and, for what does not, the fix, one sentence each
    models: list  # the texture models the server offers
    device: Optional[str]  # where the worker runs jobs ("cuda", "cpu", ...), from its health


PROBE = "import meshdream, meshdream.server; print(meshdream.__version__)"
PROBE_TIMEOUT_S = 120.0  # importing torch from a cold disk can take a minute; a hung Python is killed after this


def check(cfg: dict, chore) -> Check:
    """Probe the chosen backend on `chore`'s thread (the Python imports meshdream, the server answers); any
    subprocess is killed when the chore is cancelled or times out. Cancelling raises ChoreError."""
    lines = []
    if cfg["backend"] == "WORKER":
        python = cfg["python"]
        if not python:
            return Check(
                False, ["'Python with MeshDream' is not set: press Set up local worker to install it."], [], None
            )
        if not os.path.isfile(python):
            return Check(
                False, [f"'{python}' does not exist: press Set up local worker, or give a python executable."], [], None
            )
        chore.status = f"Asking {python} for MeshDream"
        fix = "press Set up local worker to install MeshDream, or give a Python where it is installed."
        try:
            version = chore.run([python, "-c", PROBE], PROBE_TIMEOUT_S, fix).strip().splitlines()[-1]
        except ChoreError as exc:
            if chore.cancelled.is_set():
                raise
            return Check(False, [f"'{python}' cannot run MeshDream's server: {exc}"], [], None)
        lines.append(f"{python}: MeshDream {version} with the server extra.")
    chore.status = "Connecting to the server" if cfg["backend"] == "REMOTE" else "Starting the worker"
    try:
        c = connect(cfg, cancel=chore.cancelled)
        health = c.health()
        models = [m["id"] for m in c.models()["texture_models"]]
    except ClientError as exc:
        if chore.cancelled.is_set():
            raise ChoreError("Cancelled.") from None
        return Check(False, lines + [exc.message.splitlines()[0]], [], None)
    lines.append(f"Server {c.url}: MeshDream {health['version']} on {health['device']}; models: {', '.join(models)}.")
    return Check(True, lines, models, health["device"])


def stop_workers() -> None:
    """Stop the workers this Blender started (when the add-on is disabled or Blender quits): SIGTERM, and a kill
    if one is still busy after a few seconds, so quitting never waits for a long step."""
    for process in _workers:
        if process.poll() is None:
            process.terminate()
    for process in _workers:
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    _workers.clear()


class Run:
    """One job, submitted and waited for on a daemon thread. `state` ends as done, failed or cancelled;
    with `preview`, `preview_png` holds the newest views (live while running, then the result's)."""

    def __init__(self, cfg: dict, submit, include=None, preview: bool = False) -> None:
        self.state, self.stage, self.step, self.total = "starting", "connecting", 0, 0
        self.error = None
        self.result = None
        self.preview_png = None
        self._cfg, self._submit, self._include, self._preview = cfg, submit, include, preview
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._main, name="meshdream-job", daemon=True)
        self._thread.start()

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed", "cancelled")

    @property
    def fraction(self) -> float:
        return self.step / self.total if self.total else 0.0

    def cancel(self) -> None:
        self._cancel.set()

    def join(self, timeout=None) -> None:
        self._thread.join(timeout)

    def _main(self) -> None:
        submitted = False
        try:
            c = connect(self._cfg, cancel=self._cancel)
            if self._cancel.is_set():
                raise ClientError("Cancelled before it started.")
            job = self._submit(c)
            submitted = True
            version, cancel_sent, next_preview = -1, False, 0.0
            while True:
                if self._cancel.is_set() and not cancel_sent:
                    c.cancel(job)
                    cancel_sent = True
                live = self._preview and time.monotonic() >= next_preview
                s = c.status(job, after=version, wait=0.2, preview=live)
                if live:
                    next_preview = time.monotonic() + PREVIEW_EVERY_S
                    self.preview_png = s["preview_png"] or self.preview_png
                version = s["version"]
                self.stage, self.step, self.total = s["stage"], s["step"], s["total"]
                if s["state"] == "running":
                    self.state = "running"
                if s["state"] == "done":
                    self.result = c.result(job, self._include)
                    if self._preview:
                        self.preview_png = c.status(job, preview=True).get("preview_png")
                    self.state = "cancelled" if cancel_sent else "done"
                    return
                if s["state"] in ("failed", "cancelled"):
                    self.error, self.state = s["error"], s["state"]
                    return
        except ClientError as exc:
            self.error, self.state = exc.message, "cancelled" if self._cancel.is_set() else "failed"
            if submitted and exc.status is None and self._cfg["backend"] == "WORKER":  # the connection, not a reply
                self.error = WORKER_DIED
        except Exception as exc:  # a bug must end up as a report, not a thread dying silently
            self.error, self.state = f"{type(exc).__name__}: {exc}", "failed"
