"""Run inside the real Blender program (with its window, under xvfb) by test_real_blender.py; not a pytest module.

    blender --factory-startup --enable-event-simulate SCENE.blend --python THIS -- ZIP PYTHON PORT OUT_DIR

Installs the add-on from ZIP the legacy way (Blender 3.4), points its local-worker backend at PYTHON, shows the
MeshDream sidebar tab, runs "Texture Selected" on Suzanne through the modal operator (invoke + timer), and saves
OUT_DIR/panel.png and OUT_DIR/textured.png plus OUT_DIR/report.json for the test. Each step runs in a
`bpy.app.timers` callback so the window's event loop keeps drawing in between, as it does for a person.
"""

import json
import os
import sys
import time
import traceback

import bpy
from bpy_extras.view3d_utils import location_3d_to_region_2d
from mathutils import Vector

ZIP, PYTHON, PORT, OUT = sys.argv[sys.argv.index("--") + 1 :]
REPORT = {"steps": []}
TIMEOUT_S = 90.0


def log(message):
    REPORT["steps"].append(f"{time.monotonic() - START:6.1f}s {message}")
    print("real-blender:", message, flush=True)


def finish():
    with open(os.path.join(OUT, "report.json"), "w") as f:
        json.dump(REPORT, f, indent=1)
    bpy.ops.wm.quit_blender()


def view3d():
    """(window, area, main region, sidebar region) of the 3D viewport."""
    window = bpy.context.window_manager.windows[0]
    area = next(a for a in window.screen.areas if a.type == "VIEW_3D")
    regions = {r.type: r for r in area.regions}
    return window, area, regions["WINDOW"], regions["UI"]


def setup():
    bpy.ops.preferences.addon_install(filepath=ZIP, overwrite=True)
    bpy.ops.preferences.addon_enable(module="meshdream")
    prefs = bpy.context.preferences.addons["meshdream"].preferences
    prefs.backend, prefs.python, prefs.port = "WORKER", PYTHON, int(PORT)
    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj)
    bpy.ops.mesh.primitive_monkey_add()
    bpy.ops.object.shade_smooth()
    props = bpy.context.scene.meshdream
    props.prompt, props.model, props.n_views, props.view_resolution = "red brick", "builtin", 4, 64
    props.texture_size, props.steps, props.seed = 128, 3, 0
    # Count the main panel's draws (it draws only while the sidebar shows the MeshDream tab) through the one
    # module function its draw calls: Blender keeps the draw method it saw at registration.
    preferences = sys.modules["meshdream.preferences"]
    get = preferences.get

    def counted(context):
        REPORT["panel_draws"] = REPORT.get("panel_draws", 0) + 1
        return get(context)

    preferences.get = counted
    window, area, main, ui = view3d()
    area.spaces.active.show_region_ui = True
    with bpy.context.temp_override(window=window, area=area, region=main):
        bpy.ops.view3d.view_selected()
    log("add-on installed and enabled, Suzanne selected, sidebar open")


def show_tab():
    """Click down the sidebar's tab strip until the MeshDream panel draws (3.4 has no Python API for the tab)."""
    window, area, main, ui = view3d()
    if REPORT.get("panel_draws"):
        log(f"MeshDream tab shown after {REPORT.get('tab_clicks', 0)} click(s) on the tab strip")
        return True
    clicks = REPORT["tab_clicks"] = REPORT.get("tab_clicks", 0) + 1
    x, y = ui.x + ui.width - 12, ui.y + ui.height - 20 * clicks
    if y < ui.y:
        raise RuntimeError("the MeshDream sidebar tab never drew")
    window.event_simulate(type="MOUSEMOVE", value="NOTHING", x=x, y=y)
    window.event_simulate(type="LEFTMOUSE", value="PRESS", x=x, y=y)
    window.event_simulate(type="LEFTMOUSE", value="RELEASE", x=x, y=y)
    return False


def screenshot(name):
    window, area, main, ui = view3d()
    path = os.path.join(OUT, name)
    with bpy.context.temp_override(window=window, area=area):
        bpy.ops.screen.screenshot(filepath=path, check_existing=False)
    log(f"saved {path}")
    return path


def start_job():
    window, area, main, ui = view3d()
    with bpy.context.temp_override(window=window, area=area, region=main):
        REPORT["invoke"] = sorted(bpy.ops.meshdream.texture_selected("INVOKE_DEFAULT"))
    log(f"Texture Selected invoked: {REPORT['invoke']}")


def job_finished():
    addon = sys.modules["meshdream"]
    batch = addon.state.STATE.batch
    if batch is not None:
        stage = f"{batch.label}: {batch.stage}"
        if stage != REPORT.get("last_stage"):
            REPORT["last_stage"] = stage
            log(stage)
        return False
    obj = bpy.context.active_object
    material = obj.active_material
    node = next((n for n in material.node_tree.nodes if n.type == "TEX_IMAGE"), None) if material else None
    REPORT["material"] = material.name if material else None
    if node is not None and node.image is not None:
        pixels = list(node.image.pixels)
        rgb = [pixels[i : i + 3] for i in range(0, len(pixels), 4 * 97)]  # a sample is enough
        REPORT["image"] = {
            "name": node.image.name,
            "size": list(node.image.size),
            "distinct_sampled_rgb": len({tuple(round(c, 3) for c in p) for p in rgb}),
        }
    log(f"job over: material {REPORT['material']!r}")
    return True


def material_preview():
    window, area, main, ui = view3d()
    area.spaces.active.shading.type = "MATERIAL"
    obj = bpy.context.active_object
    corners = [obj.matrix_world @ Vector(c) for c in obj.bound_box]
    rv3d = area.spaces.active.region_3d
    points = [location_3d_to_region_2d(main, rv3d, c) for c in corners]
    xs = [p.x + main.x for p in points if p is not None]
    ys = [p.y + main.y for p in points if p is not None]
    # Window pixels with y up; the test flips them for the PNG (rows from the top).
    REPORT["object_box"] = [min(xs), min(ys), max(xs), max(ys)]
    REPORT["window_size"] = [window.width, window.height]
    log("viewport in Material Preview")


def plan():
    """The steps, each a function run by the timer until it returns something other than False."""
    yield setup
    yield show_tab
    yield lambda: REPORT.update(panel_png=screenshot("panel.png"))
    yield start_job
    yield job_finished
    yield material_preview
    yield lambda: time.monotonic() - REPORT.setdefault("preview_since", time.monotonic()) > 4.0  # shaders compile
    yield lambda: REPORT.update(textured_png=screenshot("textured.png"))


STEPS = plan()
CURRENT = [next(STEPS)]
START = time.monotonic()


def tick():
    try:
        if time.monotonic() - START > TIMEOUT_S:
            raise TimeoutError(f"gave up after {TIMEOUT_S:.0f} s")
        if CURRENT[0]() is not False:
            CURRENT[0] = next(STEPS, None)
            if CURRENT[0] is None:
                REPORT["ok"] = True
                finish()
                return None
        return 0.25
    except Exception:
        REPORT["error"] = traceback.format_exc()
        print(REPORT["error"], file=sys.stderr, flush=True)
        finish()
        return None


bpy.app.timers.register(tick, first_interval=0.5)
