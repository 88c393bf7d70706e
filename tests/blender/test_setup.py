"""Check Installation and Set up local worker under bpy 5.0.1 (issue 26): every branch of the check answers the
same way, returns to Blender at once (the work runs as a background chore) and ends in one sentence; the worker is
reaped when it dies and stopped with the add-on. The full set-up in the real Blender program is in
test_real_blender.py.
"""

import os
import signal
import sys
import time
import venv
from pathlib import Path

import pytest

bpy = pytest.importorskip("bpy")
import addon_utils  # noqa: E402

NAME = "blender_addon"
UI_BUDGET_S = 1.0  # the target: Check Installation gives Blender back within a second in every case


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def addon():
    module = addon_utils.enable(NAME, default_set=True)
    yield module
    addon_utils.disable(NAME, default_set=True)


@pytest.fixture
def prefs(addon):
    from blender_addon.state import STATE

    p = bpy.context.preferences.addons[NAME].preferences
    p.backend, p.python, p.port, p.base_python, p.package_source = "WORKER", "", free_port(), "", ""
    STATE.chore = STATE.device = None
    yield p
    if STATE.chore is not None:
        STATE.chore.cancel()
        STATE.chore.join(10)
    from blender_addon import backends

    backends.stop_workers()


def press(operator, timeout=120.0, **kwargs):
    """Press a chore's button: (seconds Blender waited for it, the chore once over and applied by the timer)."""
    from blender_addon import chores
    from blender_addon.state import STATE

    t0 = time.perf_counter()
    assert getattr(bpy.ops.meshdream, operator)(**kwargs) == {"FINISHED"}
    ui = time.perf_counter() - t0
    chore = STATE.chore
    chore.join(timeout)
    assert chore.finished, f"still {chore.status} after {timeout} s"
    chores.watch()  # the timer's last call: on_done on the main thread (bpy as a module runs no timers)
    return ui, chore


def test_no_python_says_to_set_up(prefs):
    ui, chore = press("check_installation")
    assert ui < UI_BUDGET_S and chore.state == "failed"
    assert chore.error == "'Python with MeshDream' is not set: press Set up local worker to install it."
    assert not bpy.types.MESHDREAM_PT_texture.poll(bpy.context)  # the panel shows its set-up box instead


def test_a_missing_file_says_what_to_give(prefs, tmp_path):
    prefs.python = str(tmp_path / "nothing" / "python")
    ui, chore = press("check_installation")
    assert ui < UI_BUDGET_S and chore.state == "failed" and "does not exist" in chore.error


def test_a_python_without_meshdream_says_how_to_fix_it(prefs, tmp_path):
    """The branch that crashed (two values unpacked into three): now a failed check with one sentence."""
    venv.EnvBuilder(with_pip=False).create(tmp_path / "plain")
    prefs.python = str(tmp_path / "plain" / ("Scripts/python.exe" if os.name == "nt" else "bin/python"))
    ui, chore = press("check_installation")
    assert ui < UI_BUDGET_S and chore.state == "failed"
    assert "No module named" in chore.error and "press Set up local worker" in chore.error
    assert "\n" not in chore.error and "Traceback" not in chore.error


@pytest.fixture
def hanging_python(tmp_path):
    if os.name == "nt":
        pytest.skip("a shell script stands in for a Python that hangs")
    path = tmp_path / "python"
    path.write_text("#!/bin/sh\nexec sleep 600\n")
    path.chmod(0o755)
    return path


def test_a_python_that_hangs_is_stopped_after_the_timeout(prefs, hanging_python, monkeypatch):
    from blender_addon import backends

    monkeypatch.setattr(backends, "PROBE_TIMEOUT_S", 1.0)
    prefs.python = str(hanging_python)
    ui, chore = press("check_installation")
    assert ui < UI_BUDGET_S and chore.state == "failed"
    assert "did not answer within 1 s and was stopped" in chore.error


def test_a_hanging_check_is_cancelled_at_once(prefs, hanging_python):
    from blender_addon.state import STATE

    prefs.python = str(hanging_python)
    t0 = time.perf_counter()
    assert bpy.ops.meshdream.check_installation() == {"FINISHED"}
    assert time.perf_counter() - t0 < UI_BUDGET_S
    chore = STATE.chore
    while chore._process is None:
        time.sleep(0.01)
    process = chore._process
    assert not bpy.ops.meshdream.check_installation.poll()  # one chore at a time
    assert bpy.ops.meshdream.cancel_chore() == {"FINISHED"}
    chore.join(5)
    assert chore.state == "cancelled" and process.poll() is not None  # the hung process is gone


def test_a_good_python_starts_the_worker_and_reports_its_device(prefs):
    from blender_addon import backends, props
    from blender_addon.state import STATE

    prefs.python = sys.executable  # this environment has meshdream[server]
    ui, chore = press("check_installation")
    assert ui < UI_BUDGET_S and chore.state == "done", chore.error
    assert STATE.device == "cpu" and "builtin" in props.MODEL_CHOICES
    assert chore.lines[-1].startswith("Server http://127.0.0.1:") and "on cpu" in chore.lines[-1]
    assert bpy.types.MESHDREAM_PT_texture.poll(bpy.context)

    # A killed worker is reaped at once (no zombie), and the add-on's next start replaces it.
    (worker,) = backends._workers
    os.kill(worker.pid, signal.SIGKILL)
    deadline = time.monotonic() + 2
    while os.path.exists(f"/proc/{worker.pid}") and time.monotonic() < deadline:
        time.sleep(0.02)
    if os.path.exists("/proc"):
        assert not os.path.exists(f"/proc/{worker.pid}"), Path(f"/proc/{worker.pid}/status").read_text()[:200]
    _, again = press("check_installation")
    assert again.state == "done" and backends._workers[-1].pid != worker.pid

    # Disabling the add-on (as Blender does at quit) stops the worker it started.
    newest = backends._workers[-1]
    addon_utils.disable(NAME, default_set=True)
    try:
        assert newest.poll() is not None
    finally:
        addon_utils.enable(NAME, default_set=True)


def test_set_up_offers_an_existing_install_first(prefs, monkeypatch, tmp_path):
    """A source checkout: the repository's .venv has meshdream, so it is offered before anything is installed."""
    from blender_addon import install, preferences

    repo_python = Path(install.ADDON_DIR.parent / ".venv" / "bin" / "python")
    if not repo_python.exists():
        pytest.skip("no .venv in this checkout")
    monkeypatch.setattr(preferences, "private_folder", lambda: str(tmp_path / "venv"))
    ui, chore = press("set_up")
    assert ui < UI_BUDGET_S and chore.state == "done" and chore.result == ("found", str(repo_python))
    assert not prefs.python  # offered, not taken
    ui, check = press("use_existing", python=str(repo_python))
    assert prefs.python == str(repo_python) and check.state == "done", check.error


def test_set_up_that_cannot_install_says_what_to_do(prefs, monkeypatch, tmp_path):
    """An empty package source: pip finds nothing; the error is one sentence and the Python stays unset."""
    from blender_addon import preferences

    monkeypatch.setattr(preferences, "private_folder", lambda: str(tmp_path / "venv"))
    (tmp_path / "wheels").mkdir()
    prefs.base_python, prefs.package_source = sys.executable, str(tmp_path / "wheels")
    ui, chore = press("set_up", fresh=True, timeout=300)
    assert ui < UI_BUDGET_S and chore.state == "failed" and not prefs.python
    assert "check the internet connection (or the package source)" in chore.error and "\n" not in chore.error
    assert any(line.startswith("Using Python 3.") for line in chore.lines)


def test_pip_is_asked_for_the_torch_build_the_machine_can_use(addon, tmp_path):
    """CUDA wheels from PyTorch's index where nvidia-smi answers, CPU wheels otherwise (PyPI's Linux torch would
    pull ~3 GB of CUDA libraries onto a machine without a GPU); a package source replaces every index."""
    from blender_addon import install

    wheel = "/addon/core_wheel/meshdream-0.1.0-py3-none-any.whl"
    cuda, cpu = install.pip_steps(wheel, "", cuda=True), install.pip_steps(wheel, "", cuda=False)
    if sys.platform != "darwin":
        assert cuda[0][2] == ["--index-url", install.TORCH_INDEX + install.CUDA_TAG, "torch"]
        assert cpu[0][2] == ["--index-url", install.TORCH_INDEX + "cpu", "torch"]
    assert cuda[-1][2] == cpu[-1][2] == [f"{wheel}[server]"]  # the rest from pip's own index (or pip.conf's)
    (only,) = install.pip_steps(wheel, str(tmp_path), cuda=True)
    assert only[2] == ["--no-index", "--find-links", str(tmp_path), f"{wheel}[server]"]
    (only,) = install.pip_steps(wheel, "https://mirror.example/simple", cuda=False)
    assert only[2] == ["--index-url", "https://mirror.example/simple", f"{wheel}[server]"]
