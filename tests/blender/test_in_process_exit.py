"""The add-on's in-process backend (`meshdream.server.serve` on a daemon thread of the caller's process) must let
that process exit cleanly after a job: a job's worker thread still alive at interpreter finalization made Python
print `Exception ignored in: <stdout> TypeError: an integer is required` and exit with status 120 (scipy's SuperLU
thread state, see `meshdream.server.app._stop_at_exit`). Runs without Blender: `backends.py` needs only the client
(and the add-on's bpy-free `chores` and `state`).
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import importlib
import sys
import types

import numpy as np
import trimesh

package = types.ModuleType("addon")  # the add-on's folder as a package, without its __init__ (which needs bpy)
package.__path__ = [sys.argv[1]]
sys.modules["addon"] = package
backends = importlib.import_module("addon.backends")
c = backends.connect({"backend": "IN_PROCESS", "python": "", "port": 0, "url": "", "token": ""})
m = trimesh.creation.icosphere(2)
mesh = {"vertices": np.asarray(m.vertices, np.float32), "faces": np.asarray(m.faces, np.int32)}
job = c.submit_texture(mesh, "red", strategy="sync", n_views=2, view_resolution=64, texture_size=64, steps=3)
result = c.wait(job, include=("texture",))
print("texture bytes", len(result.texture_png))
"""


def test_in_process_backend_exits_cleanly():
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(ROOT / "blender_addon")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "texture bytes" in done.stdout, done.stderr
    assert "Exception ignored" not in done.stderr, done.stderr
    assert done.returncode == 0, done.stderr
