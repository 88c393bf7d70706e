"""Run inside the real Blender program (with its window, under xvfb) by test_real_blender.py; not a pytest module.

    blender --factory-startup --enable-event-simulate SCENE.blend --python THIS -- ZIP WHEELS PORT OUT_DIR GLB

A new user's first session: installs the add-on from ZIP the legacy way (Blender 3.4) with nothing configured,
shows the MeshDream sidebar tab (its set-up box), presses "Set up local worker" (packages from the wheel folder
WHEELS instead of the internet), runs "Texture Selected" on Suzanne with the panel's defaults through the modal
operator, clicks Quick (its time from click to texture), runs a "PBR" job (issue 27: a lit screenshot of the red
brick with its normal map, and one with the Normal Map node muted), kills the worker mid-job and runs another job,
clicks Create ("a tall oak chair", issue 28) and undoes it with Blender's undo, and imports GLB (a PBR file save_textured wrote) with Blender's glTF importer. Screenshots of each step and
OUT_DIR/report.json are for the test. Each step runs in a `bpy.app.timers` callback so the window keeps drawing in
between, as it does for a person.
"""

import json
import os
import signal
import socket
import sys
import threading
import time
import traceback

import bpy
from bpy_extras.view3d_utils import location_3d_to_region_2d
from mathutils import Vector

ZIP, WHEELS, PORT, OUT, GLB = sys.argv[sys.argv.index("--") + 1 :]
REPORT = {"steps": [], "screenshots": []}
TIMEOUT_S = 1500.0  # ~5 min on 2 idle cores; 15 min seen with other work on them


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


def addon():
    return sys.modules["meshdream"]


def setup():
    bpy.ops.preferences.addon_install(filepath=ZIP, overwrite=True)
    bpy.ops.preferences.addon_enable(module="meshdream")
    prefs = bpy.context.preferences.addons["meshdream"].preferences
    REPORT["python_before"] = prefs.python
    prefs.port, prefs.package_source = int(PORT), WHEELS  # the only settings a test changes: no internet here
    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj)
    bpy.ops.mesh.primitive_monkey_add()
    bpy.ops.object.shade_smooth()
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
    log("add-on installed and enabled, nothing configured, Suzanne selected, sidebar open")


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
    REPORT["screenshots"].append(name)
    log(f"saved {path}")
    return path


def press_set_up():
    """The box's button, as a click would run it (its operator returns at once; the install runs on)."""
    REPORT["first_run_box"] = not bpy.types.MESHDREAM_PT_texture.poll(bpy.context)
    t0 = time.perf_counter()
    REPORT["set_up"] = sorted(bpy.ops.meshdream.set_up())
    REPORT["set_up_ui_s"] = time.perf_counter() - t0
    log(f"Set up local worker pressed: {REPORT['set_up']} in {REPORT['set_up_ui_s']:.3f} s")


def installing():
    chore = addon().state.STATE.chore
    if chore.finished:
        raise RuntimeError(f"set-up ended before the progress was seen: {chore.state} {chore.error}")
    return chore.status.startswith("Installing") and chore.fraction > 0.1


def set_up_done():
    chore = addon().state.STATE.chore
    status = f"{chore.status} {100 * chore.fraction:.0f}%"
    if status != REPORT.get("last_status"):
        REPORT["last_status"] = status
        log(status)
    if not chore.finished or chore.on_done is not None:  # the timer applies the outcome next
        return False
    prefs = bpy.context.preferences.addons["meshdream"].preferences
    REPORT.update(set_up_state=chore.state, set_up_error=chore.error, set_up_lines=list(chore.lines))
    REPORT.update(python_after=prefs.python, device=addon().state.STATE.device)
    if chore.state != "done":
        raise RuntimeError(f"set-up {chore.state}: {chore.error}")
    log(f"set up: {prefs.python} on {REPORT['device']}")
    return True


def start_job():
    window, area, main, ui = view3d()
    with bpy.context.temp_override(window=window, area=area, region=main):
        REPORT.setdefault("invoke", []).append(sorted(bpy.ops.meshdream.texture_selected("INVOKE_DEFAULT")))
    log(f"Texture Selected invoked: {REPORT['invoke'][-1]}")


def start_quick():
    """Quick (issue 29) on the selected Suzanne, the worker already running: its click-to-texture time."""
    window, area, main, ui = view3d()
    QUICK["t0"] = time.perf_counter()
    with bpy.context.temp_override(window=window, area=area, region=main):
        REPORT["quick_invoke"] = sorted(bpy.ops.meshdream.quick_texture("INVOKE_DEFAULT"))
    log(f"Quick invoked: {REPORT['quick_invoke']}")


def quick_done():
    if addon().state.STATE.batch is not None:
        return False
    seconds = time.perf_counter() - QUICK["t0"]
    image = addon().scene_io.image_node(bpy.context.active_object.active_material).image
    REPORT["quick"] = {"seconds": seconds, "image": image.name, "size": list(image.size)}
    log(f"Quick: click to texture {seconds:.1f} s, {REPORT['quick']}")


def long_job_settings():
    props = bpy.context.scene.meshdream
    props.pbr, props.steps = False, 200


def long_job_running():
    """Wait until a long job is denoising, then kill the worker under it (as a crash or the OOM killer would)."""
    batch = addon().state.STATE.batch
    if batch is None or batch.run is None or batch.run.stage != "denoise" or batch.run.step < 1:
        return False
    worker = addon().backends._workers[-1]
    REPORT["killed_pid"] = worker.pid
    sock = socket.create_connection(("127.0.0.1", int(PORT)))  # an idle connection: its EOF is the worker's close
    threading.Thread(target=watch_connection, args=(sock,), daemon=True).start()
    KILL.update(run=batch.run, at=time.perf_counter())
    os.kill(worker.pid, signal.SIGKILL)
    threading.Thread(target=watch_run, args=(batch.run,), daemon=True).start()
    log(f"worker {worker.pid} killed at step {batch.run.step}")
    return True


def watch_connection(sock):
    """On its own thread: when the worker's sockets close. SIGKILL frees the worker's memory (~1 GB) before its
    sockets close, which takes the kernel a while under load; the add-on cannot know before the close."""
    try:
        sock.recv(1)
    except OSError:
        pass
    KILL["closed"] = time.perf_counter()


def watch_run(run):
    """On its own thread, every millisecond (the main thread's timers wait for the viewport's redraws): when the
    job shows as failed."""
    while run.state != "failed" and time.perf_counter() - KILL["at"] < 10:
        time.sleep(0.001)
    KILL["failed"] = time.perf_counter()


def kill_seen():
    if "closed" not in KILL or "failed" not in KILL:
        if time.perf_counter() - KILL["at"] > 10:
            raise RuntimeError(f"the killed worker's job is still {KILL['run'].state}")
        return False
    REPORT["closed_after_kill_s"] = KILL["closed"] - KILL["at"]
    REPORT["failed_after_kill_s"] = KILL["failed"] - KILL["at"]
    REPORT["kill_error"] = KILL["run"].error
    log(
        f"worker's sockets closed {REPORT['closed_after_kill_s'] * 1000:.0f} ms after the kill; job failed "
        f"{REPORT['failed_after_kill_s'] * 1000:.0f} ms after it: {KILL['run'].error!r}"
    )
    return True


def batch_over():
    if addon().state.STATE.batch is not None:
        return False
    pid = REPORT["killed_pid"]
    REPORT["zombie"] = os.path.exists(f"/proc/{pid}")
    REPORT["zombie_status"] = open(f"/proc/{pid}/status").read()[:120] if REPORT["zombie"] else ""
    props = bpy.context.scene.meshdream
    props.steps, props.n_views = 1, 1  # the restart is the point here, not the texture
    return True


def job_finished():
    batch = addon().state.STATE.batch
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


def pbr_inputs(material):
    """{Principled BSDF input: {"image", "colorspace", "normal_map"}} of the images feeding Base Color, Roughness,
    Metallic and Normal (through Separate Color or Normal Map nodes, as the glTF importer wires them)."""

    def upstream(socket):
        nodes = []
        for link in socket.links:
            nodes.append(link.from_node)
            for above in link.from_node.inputs:
                nodes += upstream(above)
        return nodes

    bsdf = next(n for n in material.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
    out = {}
    for name in ("Base Color", "Roughness", "Metallic", "Normal"):
        nodes = upstream(bsdf.inputs[name])
        image = next((n.image for n in nodes if n.type == "TEX_IMAGE" and n.image is not None), None)
        normal_map = next((n for n in nodes if n.type == "NORMAL_MAP"), None)
        out[name] = {
            "image": image.name if image else None,
            "colorspace": image.colorspace_settings.name if image else None,
            "normal_map": [normal_map.space, normal_map.uv_map] if normal_map else None,
        }
    return out


def pbr_job():
    """The panel's "PBR" toggle on, the model's own settings, a grazing sun so the normal map shows."""
    props = bpy.context.scene.meshdream
    props.pbr, props.prompt, props.steps, props.n_views = True, "red brick", 0, 8
    sun = bpy.data.objects.new("Grazing Sun", bpy.data.lights.new("Grazing Sun", "SUN"))
    sun.data.energy = 4.0
    sun.rotation_euler = (1.2, 0.0, -0.9)  # low over the upper left: bumps cast their shading
    bpy.context.collection.objects.link(sun)
    window, area, main, ui = view3d()
    area.spaces.active.shading.use_scene_lights = True
    log("PBR on, grazing sun added")


def pbr_applied():
    obj = bpy.context.active_object
    REPORT["pbr"] = {"material": obj.active_material.name, "inputs": pbr_inputs(obj.active_material)}
    uv = obj.data.uv_layers.active
    REPORT["pbr"]["uv_map"] = uv.name if uv else None
    log(f"PBR material {REPORT['pbr']['material']!r}: {REPORT['pbr']['inputs']}")


def mute_normal_map(mute):
    material = bpy.context.active_object.active_material
    for node in material.node_tree.nodes:
        if node.type == "NORMAL_MAP":
            node.mute = mute
    log(f"Normal Map node {'muted' if mute else 'on'}")


def import_glb():
    """Blender's own glTF importer on a PBR GLB written by save_textured. Shading "Smooth": Debian's 3.4 cannot
    import a GLB with normals under its default shading (a numpy clash in its importer), PBR or not."""
    before = set(bpy.data.objects)
    bpy.ops.import_scene.gltf(filepath=GLB, import_shading="SMOOTH")
    meshes = [o for o in set(bpy.data.objects) - before if o.type == "MESH"]
    REPORT["glb"] = [{"material": o.active_material.name, "inputs": pbr_inputs(o.active_material)} for o in meshes]
    log(f"imported {GLB}: {REPORT['glb']}")


def scene_names():
    return {
        kind: sorted(x.name for x in getattr(bpy.data, kind)) for kind in ("objects", "meshes", "materials", "images")
    }


def start_create():
    """Issue 28: the Create section's button, as a click (the modal operator), after an undo step that stands for
    the user's last action."""
    props = bpy.context.scene.meshdream
    props.create_prompt = "a tall oak chair"
    bpy.context.scene.cursor.location = (2.5, 0.0, 0.0)
    window, area, main, ui = view3d()
    with bpy.context.temp_override(window=window, area=area, region=main):
        bpy.ops.ed.undo_push(message="before Create")
        CREATE.update(before=scene_names(), t0=time.perf_counter())
        REPORT["create_invoke"] = sorted(bpy.ops.meshdream.create("INVOKE_DEFAULT"))
    log(f"Create invoked: {REPORT['create_invoke']}")


def create_done():
    if addon().state.STATE.batch is not None:
        return False
    obj = bpy.context.active_object
    after = scene_names()
    REPORT["create"] = {
        "seconds": time.perf_counter() - CREATE["t0"],
        "added": {k: sorted(set(after[k]) - set(CREATE["before"][k])) for k in after},
        "removed": {k: sorted(set(CREATE["before"][k]) - set(after[k])) for k in after},
        "active": obj.name if obj else None,
        "location": list(obj.location) if obj else None,
        "faces": len(obj.data.polygons) if obj else 0,
        "image_size": list(addon().scene_io.image_node(obj.active_material).image.size) if obj else None,
    }
    log(f"Create: {REPORT['create']}")
    return True


def undo_create():
    """Ctrl-Z in the 3D view: Blender's own undo of the Create step."""
    window, area, main, ui = view3d()
    with bpy.context.temp_override(window=window, area=area, region=main):
        REPORT["undo"] = sorted(bpy.ops.ed.undo())
    REPORT["after_undo"] = scene_names()
    REPORT["before_create"] = CREATE["before"]
    log(f"undo: {REPORT['undo']}; objects {REPORT['after_undo']['objects']}")


def pause(seconds):
    """A step that lets the window draw for `seconds`."""
    since = {}
    return lambda: time.monotonic() - since.setdefault("t", time.monotonic()) > seconds


def plan():
    """The steps, each a function run by the timer until it returns something other than False."""
    yield setup
    yield show_tab
    yield pause(1.0)
    yield lambda: REPORT.update(first_run_png=screenshot("1-first-run.png"))
    yield press_set_up
    yield installing
    yield pause(0.5)
    yield lambda: screenshot("2-setting-up.png")
    yield set_up_done
    yield pause(1.0)
    yield lambda: screenshot("3-set-up.png")
    yield start_job  # the panel's defaults: the built-in model's own views, texture size and steps
    yield job_finished
    yield lambda: REPORT.update(textured=dict(material=REPORT["material"], image=REPORT.get("image")))
    yield material_preview
    yield pause(4.0)  # shaders compile
    yield lambda: REPORT.update(textured_png=screenshot("4-textured.png"))
    yield start_quick
    yield quick_done
    yield pbr_job
    yield start_job
    yield job_finished
    yield pbr_applied
    yield material_preview
    yield pause(4.0)  # shaders compile
    yield lambda: REPORT.update(pbr_png=screenshot("5-pbr-red-brick.png"))
    yield lambda: mute_normal_map(True)
    yield pause(2.0)
    yield lambda: REPORT.update(flat_png=screenshot("6-pbr-flat-normals.png"))
    yield lambda: mute_normal_map(False)
    yield long_job_settings
    yield start_job
    yield long_job_running
    yield kill_seen
    yield batch_over
    yield pause(0.5)
    yield lambda: screenshot("7-worker-killed.png")
    yield start_job  # a new worker is started for it
    yield job_finished
    yield lambda: REPORT.update(restarted_image=(REPORT.get("image") or {}).get("name"))
    yield start_create
    yield create_done
    yield undo_create
    yield import_glb


STEPS = plan()
CURRENT = [next(STEPS)]
START = time.monotonic()
KILL = {}
QUICK = {}
CREATE = {}


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
