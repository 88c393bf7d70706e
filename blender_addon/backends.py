"""Where jobs run. Every backend is a `client.Client`, the standard-library-only client of `meshdream serve`, so
Blender's Python never needs torch: a local worker process started on demand (the default), a server thread in
Blender's own process (when the core imports here), or a remote server. Jobs are waited for on a thread (`Run`);
Blender's main thread only reads its fields."""

import os
import socket
import subprocess
import threading
import time

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
PREVIEW_EVERY_S = 1.0  # how often a running job's live views are fetched (the status polls in between stay small)
_lock = threading.Lock()
_in_process = None  # the Client of the server thread started inside this Blender


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


def connect(cfg: dict) -> "client.Client":
    """A client whose server answers; may start one (seconds), so call it off the main thread."""
    if cfg["backend"] == "REMOTE":
        if not cfg["url"]:
            raise ClientError("No server URL is set; enter it in the MeshDream add-on preferences.")
        c = client.Client(cfg["url"], token=cfg["token"] or None)
        c.health()
        return c
    if cfg["backend"] == "IN_PROCESS":
        return _start_in_process()
    if not cfg["python"]:
        raise ClientError(
            "Set 'Python with MeshDream' in the add-on preferences (e.g. the repository's .venv/bin/python), "
            "then press Check Installation."
        )
    return client.ensure_server(python=cfg["python"], port=cfg["port"])


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
                target=serve, kwargs={"port": port, "log_level": "warning"}, name="meshdream-server", daemon=True
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


def check(cfg: dict) -> tuple[bool, list[str], list[str]]:
    """(ok, lines saying what works and, for what does not, the exact fix, the texture models available)."""
    if cfg["backend"] == "WORKER":
        python = cfg["python"]
        if not python:
            return (
                False,
                [
                    "'Python with MeshDream' is not set: point it at a Python where meshdream is installed,",
                    "e.g. <repo>/.venv/bin/python (created by `python build.py setup`).",
                ],
                [],
            )
        if not os.path.isfile(python):
            return False, [f"'{python}' does not exist; give the full path of a python executable."], []
        probe = "import meshdream, meshdream.server; print(meshdream.__version__)"
        try:
            done = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=300)
        except OSError as exc:
            return False, [f"Cannot run '{python}': {exc.strerror}."], []
        if done.returncode:
            last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
            return False, [
                f"'{python}' cannot import meshdream: {last}",
                f"Fix: {python} -m pip install 'meshdream[server]' (or `python build.py setup` in the repo).",
            ]
        lines = [f"{python}: meshdream {done.stdout.strip()} with the server extra."]
    else:
        lines = []
    try:
        c = connect(cfg)
        health = c.health()
        models = [m["id"] for m in c.models()["texture_models"]]
    except ClientError as exc:
        return False, lines + [exc.message.splitlines()[0]], []
    lines.append(f"Server {c.url}: MeshDream {health['version']} on {health['device']}; models: {', '.join(models)}.")
    return True, lines, models


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
        try:
            c = connect(self._cfg)
            if self._cancel.is_set():
                raise ClientError("Cancelled before it started.")
            job = self._submit(c)
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
        except Exception as exc:  # a bug must end up as a report, not a thread dying silently
            self.error, self.state = f"{type(exc).__name__}: {exc}", "failed"
