"""The Blender add-on under real Blender (bpy 5.0 as a module, background mode: operators run synchronously).

Jobs run on the default backend, a local worker (`meshdream serve` started from this Python), with the built-in
model and tiny settings; the zip test installs the built add-on into a fresh Blender process and runs a job there
through its own worker with the vendored standard-library client only.
"""

import io
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

bpy = pytest.importorskip("bpy")
import addon_utils  # noqa: E402  (only exists once bpy is imported)

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
import build  # noqa: E402

NAME = "blender_addon"  # the source tree's add-on package; installed from the zip it is `meshdream`
OPERATORS = (
    "texture_selected",
    "quick_texture",
    "refine_texture",
    "project_from_view",
    "inpaint_seams",
    "restyle_texture",
    "upscale_texture",
    "generate_shape",
    "create",
    "cancel",
)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PORT = free_port()


def use_worker():
    """The default backend: a `meshdream serve` child process of this Python, started by the first job."""
    prefs = bpy.context.preferences.addons[NAME].preferences
    prefs.backend, prefs.python, prefs.port = "WORKER", sys.executable, PORT


@pytest.fixture(scope="module")
def addon():
    module = addon_utils.enable(NAME, default_set=True)
    use_worker()
    yield module
    addon_utils.disable(NAME, default_set=True)


@pytest.fixture
def scene(addon):
    """An empty scene with tiny job settings and Suzanne (with its own UV map) selected."""
    bpy.ops.wm.read_homefile(use_empty=True)
    props = bpy.context.scene.meshdream
    props.prompt, props.n_views, props.view_resolution, props.texture_size, props.steps = "red brick", 2, 64, 64, 3
    bpy.ops.mesh.primitive_monkey_add()
    return bpy.context.scene


def image_std(material) -> float:
    node = next(n for n in material.node_tree.nodes if n.type == "TEX_IMAGE")
    image = node.image
    pixels = np.empty(image.size[0] * image.size[1] * 4, np.float32)
    image.pixels.foreach_get(pixels)
    return float(pixels.reshape(-1, 4)[:, :3].std(axis=0).max())


def pixels(image) -> np.ndarray:
    out = np.empty(len(image.pixels), np.float32)
    image.pixels.foreach_get(out)
    return out


def paint(obj, size: int = 64):
    """A user's material on `obj`: a checker image (not made by MeshDream) feeding Base Color. (material, image)"""
    image = bpy.data.images.new("Checker", size, size)
    y, x = np.mgrid[:size, :size] // 8
    rgba = np.ones((size, size, 4), np.float32)
    rgba[..., 0], rgba[..., 1] = (x + y) % 2, x / (size // 8)
    image.pixels.foreach_set(rgba.ravel())
    material = bpy.data.materials.new("Painted")
    nodes = material.node_tree.nodes
    tex = nodes.new("ShaderNodeTexImage")
    tex.image = image
    material.node_tree.links.new(tex.outputs["Color"], nodes["Principled BSDF"].inputs["Base Color"])
    obj.data.materials.append(material)
    return material, image


def uv_data(obj, layer=None) -> np.ndarray:
    uv = np.empty(len(obj.data.loops) * 2, np.float32)
    (layer or obj.data.uv_layers.active).data.foreach_get("uv", uv)
    return uv


def names(collection) -> set:
    return {item.name for item in collection}


def test_register_unregister_twice(addon):
    for _ in range(2):
        addon_utils.disable(NAME, default_set=True)
        assert not hasattr(bpy.types.Scene, "meshdream")
        assert not any(hasattr(bpy.types, f"MESHDREAM_OT_{op}") for op in OPERATORS)
        addon_utils.enable(NAME, default_set=True)
        assert hasattr(bpy.types.Scene, "meshdream")
        assert all(hasattr(bpy.types, f"MESHDREAM_OT_{op}") for op in OPERATORS)
    use_worker()


class RecordingLayout:
    """Stands in for a panel's UILayout (background Blender draws no panels): checks each property and operator a
    draw names against what is registered, and records them."""

    def __init__(self):
        self.props, self.operators = [], []

    def prop(self, data, name, **_):
        assert name in data.bl_rna.properties, f"{name} is not a property of {data}"
        self.props.append(name)

    def operator(self, idname, **_):
        assert hasattr(bpy.types, "MESHDREAM_OT_" + idname.split(".")[1]), f"{idname} is not registered"
        self.operators.append(idname)

    def row(self, **_):
        return self

    column = row


def test_every_section_draws_registered_properties_and_its_button(scene):
    from types import SimpleNamespace

    panel = sys.modules[NAME].panel
    scene.meshdream.upscaler = "file"  # its conditional field shows too
    drawn = {}
    for cls in (c for c in panel.CLASSES if issubclass(c, panel._Section)):
        layout = RecordingLayout()
        this = SimpleNamespace(layout=layout, **{k: getattr(cls, k) for k in ("fields", "operator", "icon", "split")})
        this.draw_more = lambda lay, props, cls=cls, this=this: cls.draw_more(this, lay, props)
        cls.draw(this, bpy.context)
        drawn[cls.bl_label] = (layout.props, layout.operators)
    assert drawn["Create"] == (["create_prompt", "create_pbr"], ["meshdream.create"])
    assert drawn["Upscale Texture"] == (["upscale_scale", "upscaler", "upscaler_file"], ["meshdream.upscale_texture"])
    assert drawn["Project from View"][0] == ["use_viewport_image", "strength"]
    assert len(drawn) == 6 and all(len(ops) == 1 for _, ops in drawn.values())


def test_texture_selected_keeps_the_users_material_and_uv_map(scene):
    obj = bpy.context.active_object
    user = bpy.data.materials.new("User Material")
    user.node_tree.nodes["Principled BSDF"].inputs["Base Color"].default_value = (0.1, 0.5, 0.9, 1.0)
    obj.data.materials.append(user)
    nodes_before, uv_before = len(user.node_tree.nodes), uv_data(obj)
    images_before = names(bpy.data.images)

    assert bpy.ops.meshdream.texture_selected() == {"FINISHED"}

    new = obj.active_material
    assert new is not user and new.name.startswith("User Material")
    assert image_std(new) > 0.01  # not a constant colour
    assert user.name in bpy.data.materials and len(user.node_tree.nodes) == nodes_before
    assert tuple(user.node_tree.nodes["Principled BSDF"].inputs["Base Color"].default_value) == pytest.approx(
        (0.1, 0.5, 0.9, 1.0)
    )
    assert not user.node_tree.nodes["Principled BSDF"].inputs["Base Color"].is_linked
    assert names(obj.data.uv_layers) == {"UVMap"} and np.array_equal(uv_data(obj), uv_before)
    assert len(names(bpy.data.images) - images_before) == 1
    assert next(iter(names(bpy.data.images) - images_before)).startswith("MeshDream")
    assert bpy.data.images[new.node_tree.nodes.active.image.name].packed_file is not None  # unsaved .blend: packed


def test_texture_uses_the_active_uv_map_of_several_and_changes_none(scene, monkeypatch):
    """Issue 15, item 5: with two UV maps and the second active, the job is sent and wired on the second."""
    from blender_addon import scene_io

    obj = bpy.context.active_object
    me = obj.data
    second = me.uv_layers.new(name="Second")  # a copy of the first, squeezed into the left half
    uv = np.empty(len(me.loops) * 2, np.float32)
    second.data.foreach_get("uv", uv)
    uv[0::2] *= 0.5
    second.data.foreach_set("uv", uv)
    me.uv_layers.active = second
    before = {layer.name: uv_data(obj, layer) for layer in me.uv_layers}
    sent = []
    arrays = scene_io.mesh_arrays
    monkeypatch.setattr(scene_io, "mesh_arrays", lambda *a: sent.append((a[2], arrays(*a))) or sent[-1][1])

    assert bpy.ops.meshdream.texture_selected() == {"FINISHED"}

    ((uv_name, mesh),) = sent
    assert uv_name == "Second" and mesh["uvs"][..., 0].max() <= 0.5 + 1e-6 < before["UVMap"][0::2].max()
    nodes = obj.active_material.node_tree.nodes
    assert nodes.active.type == "TEX_IMAGE" and image_std(obj.active_material) > 0.01
    (link,) = nodes.active.inputs["Vector"].links
    assert link.from_node.type == "UVMAP" and link.from_node.uv_map == "Second"
    assert me.uv_layers.active.name == "Second" and [layer.name for layer in me.uv_layers] == list(before)
    assert all(np.array_equal(uv_data(obj, me.uv_layers[name]), data) for name, data in before.items())


def feeding(socket, seen=()):
    """The nodes upstream of a node socket, nearest first (through any Separate Color / Normal Map between)."""
    out = []
    for link in socket.links:
        node = link.from_node
        out.append(node)
        for upstream in node.inputs:
            out += feeding(upstream)
    return out


def pbr_inputs(material) -> dict:
    """{BSDF input: the image feeding it} for Base Color, Roughness, Metallic and Normal (None: not connected), and
    checks the maps read as data and the normal map is tangent space on the UV map its image is read through."""
    bsdf = next(n for n in material.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
    out = {}
    for name in ("Base Color", "Roughness", "Metallic", "Normal"):
        images = [n for n in feeding(bsdf.inputs[name]) if n.type == "TEX_IMAGE"]
        out[name] = images[0].image if images else None
        if images and name != "Base Color":
            assert images[0].image.colorspace_settings.name == "Non-Color", name
        if name == "Normal" and images:
            (normal_map,) = [n for n in feeding(bsdf.inputs[name]) if n.type == "NORMAL_MAP"]
            assert normal_map.space == "TANGENT"
            uv_nodes = [n for n in feeding(images[0].inputs["Vector"]) if n.type == "UVMAP"]
            assert not uv_nodes or normal_map.uv_map == uv_nodes[0].uv_map
    return out


def png_bytes(array) -> bytes:
    buf = io.BytesIO()
    Image.fromarray((np.clip(array, 0, 1) * 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_pbr_maps_build_a_principled_material_beside_the_users(scene):
    """Issue 27: a result with maps wires roughness, metallic (Non-Color) and a tangent-space normal map on the
    textured UV map into copies of the user's materials; the user's material and images stay as they were."""
    from blender_addon import scene_io

    obj = bpy.context.active_object
    user, checker = paint(obj)
    before = pixels(checker)
    size = 16
    ramp = np.linspace(0, 1, size, dtype=np.float32)[None].repeat(size, 0)
    maps = {
        "roughness": png_bytes(ramp),
        "metallic": png_bytes(1 - ramp),
        "normal": png_bytes(np.stack([ramp, 1 - ramp, np.ones_like(ramp)], -1)),
    }
    scene_io.apply_texture(obj, png_bytes(np.full((size, size, 3), 0.5)), "UVMap", maps_png=maps)

    new = obj.active_material
    assert new is not user and new.name == "Painted MeshDream"
    connected = pbr_inputs(new)
    assert all(connected.values()), connected
    assert connected["Roughness"].name == f"MeshDream {obj.name} roughness"
    got = pixels(connected["Roughness"]).reshape(size, size, 4)[::-1, :, 0]  # Blender's rows run bottom-up
    assert np.allclose(got, ramp, atol=1 / 255)  # the map as the job sent it
    assert user.use_fake_user and pbr_inputs(user)["Roughness"] is None and pbr_inputs(user)["Normal"] is None
    assert pbr_inputs(user)["Base Color"] == checker and np.array_equal(pixels(checker), before)
    scene_io.apply_texture(obj, png_bytes(np.full((size, size, 3), 0.25)), "UVMap")  # a second result on top
    assert obj.active_material.name == "Painted MeshDream.001" and new.use_fake_user  # not "... MeshDream MeshDream"


def test_texture_selected_with_pbr_applies_the_jobs_maps(scene):
    """The panel's PBR toggle through a real job: the maps come back and are wired on the textured UV map."""
    obj = bpy.context.active_object
    user, checker = paint(obj)
    scene.meshdream.pbr = True
    assert bpy.ops.meshdream.texture_selected() == {"FINISHED"}
    new = obj.active_material
    connected = pbr_inputs(new)
    assert new is not user and all(connected.values()), connected
    assert connected["Normal"].size[:] == connected["Base Color"].size[:] == (64, 64)
    normal = pixels(connected["Normal"]).reshape(64, 64, 4)[..., :3] * 2 - 1
    assert np.median(normal[..., 2]) > 0.5  # tangent space: mostly the surface's own normal
    assert pbr_inputs(user) == {"Base Color": checker, "Roughness": None, "Metallic": None, "Normal": None}


def test_a_pbr_glb_from_save_textured_imports_with_its_maps_connected(scene, tmp_path):
    """Blender's own glTF importer reads what save_textured writes: base colour, metallic-roughness and normal."""
    import meshdream

    mesh = meshdream.load_mesh(ROOT / "core" / "meshdream" / "assets" / "suzanne.obj")
    tiny = dict(n_views=2, view_resolution=64, texture_size=64, steps=2)
    path = meshdream.save_textured(
        mesh, meshdream.texture_mesh(mesh, "red brick", pbr=True, **tiny), tmp_path / "a.glb"
    )
    before = set(bpy.data.objects)
    assert bpy.ops.import_scene.gltf(filepath=str(path)) == {"FINISHED"}
    (imported,) = [o for o in set(bpy.data.objects) - before if o.type == "MESH"]
    connected = pbr_inputs(imported.active_material)
    assert all(connected.values()), connected
    assert connected["Roughness"] == connected["Metallic"]  # one image: G roughness, B metallic (glTF)


def test_texture_saves_next_to_a_saved_blend(scene, tmp_path):
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "scene.blend"))
    assert bpy.ops.meshdream.texture_selected() == {"FINISHED"}
    image = bpy.context.active_object.active_material.node_tree.nodes.active.image
    assert image.filepath.startswith("//") and (tmp_path / Path(image.filepath[2:]).name).is_file()


def test_a_mesh_without_uvs_gets_a_new_smart_uv_map(scene):
    obj = bpy.context.active_object
    obj.data.uv_layers.remove(obj.data.uv_layers[0])
    bpy.ops.object.modifier_add(type="SUBSURF")  # the evaluated mesh is what is textured
    assert bpy.ops.meshdream.texture_selected() == {"FINISHED"}
    assert names(obj.data.uv_layers) == {"MeshDream UV"}
    assert image_std(obj.active_material) > 0.01
    assert obj.mode == "OBJECT"


def builtin_defaults() -> tuple[int, int]:
    """The built-in model's own view resolution and texture size: its card's, else its class's."""
    from meshdream.generators.builtin import CARD, BuiltinGenerator

    card = json.loads(CARD.read_text()).get("defaults", {})
    return (
        card.get("view_resolution", BuiltinGenerator.native_resolution),
        card.get("texture_size", BuiltinGenerator.default_texture_size),
    )


def png_shape(data: bytes) -> tuple:
    return np.asarray(Image.open(io.BytesIO(data))).shape[:2]


@pytest.fixture
def sizes(monkeypatch):
    """(texture size, [view sizes]) of each result the operators apply, as (height, width) pairs."""
    from blender_addon import tasks

    out, apply = [], tasks.TextureTask.apply

    def record(task, context, result):
        out.append((png_shape(result.texture_png), [png_shape(v) for v in result.views_png]))
        return apply(task, context, result)

    monkeypatch.setattr(tasks, "_include", lambda settings: ("texture", "views"))
    monkeypatch.setattr(tasks.TextureTask, "apply", record)
    return out


def test_panel_defaults_are_the_models_own(scene, sizes):
    """Issue 18, item 4: view resolution and texture size default to 0, sent as nothing, so a job runs at the
    model's own (the built-in card's small views, not 512 px: 16 times its pixels on a CPU)."""
    props = scene.meshdream
    for name in ("view_resolution", "texture_size"):
        props.property_unset(name)  # back to the panel's default
        assert getattr(props, name) == 0
    props.n_views, props.steps = 1, 1
    assert bpy.ops.meshdream.texture_selected() == {"FINISHED"}
    view, texture = builtin_defaults()
    assert sizes == [((texture, texture), [(view, view)])]


def test_project_from_view_uses_the_scene_camera_without_a_viewport(scene, sizes):
    """The camera goes with its aspect only: its larger side is the job's view resolution, the model's when the
    panel leaves it at 0, else the panel's (as the texture size is)."""
    obj = bpy.context.active_object
    bpy.ops.object.camera_add(location=(0, -5, 0.5), rotation=(np.radians(85), 0, 0))
    scene.camera = bpy.context.active_object
    scene.render.resolution_x, scene.render.resolution_y = 1000, 500
    bpy.context.view_layer.objects.active = obj
    props = scene.meshdream
    props.steps = 1
    assert bpy.ops.meshdream.project_from_view() == {"FINISHED"}
    assert image_std(obj.active_material) > 0.01
    props.view_resolution = props.texture_size = 0
    assert bpy.ops.meshdream.project_from_view() == {"FINISHED"}
    view, texture = builtin_defaults()
    assert sizes == [((64, 64), [(32, 64)]), ((texture, texture), [(view // 2, view)])]


def test_inpaint_seams_writes_a_new_image(scene):
    obj = bpy.context.active_object
    assert bpy.ops.meshdream.texture_selected() == {"FINISHED"}
    textured = obj.active_material
    source = textured.node_tree.nodes.active.image
    pixels_before = np.empty(len(source.pixels), np.float32)
    source.pixels.foreach_get(pixels_before)
    assert bpy.ops.meshdream.inpaint_seams() == {"FINISHED"}
    assert obj.active_material is not textured and image_std(obj.active_material) > 0.01
    after = np.empty(len(source.pixels), np.float32)
    source.pixels.foreach_get(after)
    assert np.array_equal(after, pixels_before)  # the source image is untouched
    assert textured.node_tree.nodes.active.image == source


def test_restyle_and_upscale_write_new_images_and_keep_the_original(scene):
    from blender_addon.scene_io import image_node

    obj = bpy.context.active_object
    material, checker = paint(obj)
    before = pixels(checker)
    props = scene.meshdream
    props.restyle_strength = 0.5
    assert bpy.ops.meshdream.restyle_texture() == {"FINISHED"}
    restyled = obj.active_material
    image = image_node(restyled).image
    assert restyled is not material and image.name == "Checker_restyled" and tuple(image.size) == (64, 64)
    assert image_std(restyled) > 0.01 and not np.array_equal(pixels(image), before)
    # The user's material and image are as they were, and kept (fake user) to switch back to.
    assert material.use_fake_user and image_node(material).image == checker and np.array_equal(pixels(checker), before)

    props.upscale_scale, props.upscaler = "2", "lanczos"
    assert bpy.ops.meshdream.upscale_texture() == {"FINISHED"}
    big = image_node(obj.active_material).image
    assert big.name == "Checker_restyled_x2" and tuple(big.size) == (128, 128)
    assert image_node(restyled).image == image and restyled.use_fake_user


def test_quick_previews_and_refine_continues_from_it_at_full_size(scene):
    from meshdream.presets import PRESETS

    from blender_addon.scene_io import PREVIEW, image_node

    obj = bpy.context.active_object
    user = bpy.data.materials.new("User Material")
    obj.data.materials.append(user)
    uv_before, images_before = uv_data(obj), names(bpy.data.images)
    seconds = []
    for _ in range(2):  # the first click may start the worker and load the model; the second finds them ready
        t0 = time.perf_counter()
        assert bpy.ops.meshdream.quick_texture() == {"FINISHED"}
        seconds.append(time.perf_counter() - t0)
    print(f"\nQuick, click to texture: {seconds[0]:.1f} s (first), {seconds[1]:.1f} s (worker ready)")
    material = obj.active_material
    preview = image_node(material).image
    quick = PRESETS["quick"].texture_size
    assert material.name.startswith("User Material MeshDream") and preview.name.startswith("MeshDream Suzanne")
    assert preview.get(PREVIEW) and tuple(preview.size) == (quick, quick) and image_std(material) > 0.01
    assert np.array_equal(uv_data(obj), uv_before) and len(user.node_tree.nodes) == 2  # the user's, untouched
    start = pixels(preview).reshape(quick, quick, 4)[..., :3]

    props = scene.meshdream  # Refine takes the panel's settings; 0 (texture size, view px): the full preset's
    props.n_views, props.view_resolution, props.texture_size, props.steps = 4, 0, 0, 4
    name, others = preview.name, names(bpy.data.images) - {preview.name}
    t0 = time.perf_counter()
    assert bpy.ops.meshdream.refine_texture() == {"FINISHED"}
    print(f"Refine: {time.perf_counter() - t0:.1f} s")
    refined = image_node(obj.active_material).image
    size = refined.size[0]
    assert obj.active_material == material and refined.name == name and refined.get(PREVIEW) is None
    assert names(bpy.data.images) - {name} == others and size == 512 and tuple(refined.size) == (size, size)
    after = pixels(refined).reshape(size, size, 4)[::-1][:: size // quick, :: size // quick, :3][::-1]
    assert np.corrcoef(start.ravel(), after.ravel())[0, 1] > 0.5  # the preview's layout carried on

    with pytest.raises(RuntimeError, match="is not a Quick preview"):  # refined: no longer a preview
        bpy.ops.meshdream.refine_texture()
    assert image_node(obj.active_material).image == refined and images_before <= names(bpy.data.images)


def test_restyle_and_upscale_report_what_is_missing(scene):
    from blender_addon import tasks

    obj = bpy.context.active_object
    for op in ("restyle_texture", "upscale_texture"):
        with pytest.raises(RuntimeError, match="has no image texture in its active material"):
            getattr(bpy.ops.meshdream, op)()
    paint(obj, size=48)
    state = (names(bpy.data.materials), names(bpy.data.images))
    with pytest.raises(RuntimeError, match="Texture size 48 must be a positive power of two"):
        bpy.ops.meshdream.upscale_texture()  # the server's answer, one line
    assert tasks.UpscaleTask(bpy.context, obj).settings["upscaler"] == "builtin"  # the panel's default
    scene.meshdream.upscaler = "file"
    with pytest.raises(RuntimeError, match="Choose the upscaler's model file"):
        bpy.ops.meshdream.upscale_texture()
    scene.meshdream.upscaler_file = "//models/4x.pth"
    assert tasks.UpscaleTask(bpy.context, obj).settings["upscaler"] == bpy.path.abspath("//models/4x.pth")
    obj.data.uv_layers.remove(obj.data.uv_layers[0])
    with pytest.raises(RuntimeError, match="has no UV map"):
        bpy.ops.meshdream.restyle_texture()
    assert (names(bpy.data.materials), names(bpy.data.images)) == state


def test_generate_shape_adds_a_textured_object_at_the_cursor(scene):
    props = scene.meshdream
    props.shape_prompt, props.texture_shape = "chair", True
    scene.cursor.location = (2.0, 0.0, 0.0)
    before = names(bpy.data.objects)
    assert bpy.ops.meshdream.generate_shape() == {"FINISHED"}
    (new,) = names(bpy.data.objects) - before
    obj = bpy.data.objects[new]
    assert len(obj.data.polygons) > 100 and tuple(obj.location) == pytest.approx((2.0, 0.0, 0.0))
    assert image_std(obj.active_material) > 0.01


def test_create_adds_one_textured_object_named_after_the_sentence_at_the_cursor(scene):
    """Issue 28: the Create section's button; the new object, its mesh, material and images are all that change."""
    monkey = bpy.context.active_object
    props = scene.meshdream
    props.create_prompt, props.create_pbr = "a tall oak chair", True
    scene.cursor.location = (0.0, 3.0, 1.0)
    kinds = ("objects", "meshes", "materials", "images")
    before = {kind: names(getattr(bpy.data, kind)) for kind in kinds}
    monkey_state = (tuple(monkey.matrix_world.col[3]), len(monkey.data.vertices), len(monkey.material_slots))
    assert bpy.ops.meshdream.create() == {"FINISHED"}
    added = {kind: names(getattr(bpy.data, kind)) - before[kind] for kind in kinds}
    assert all(before[kind] <= names(getattr(bpy.data, kind)) for kind in kinds)  # nothing removed or renamed
    assert added["objects"] == {"a tall oak chair"} and len(added["meshes"]) == len(added["materials"]) == 1
    obj = bpy.data.objects["a tall oak chair"]
    assert bpy.context.active_object == obj and tuple(obj.location) == pytest.approx((0.0, 3.0, 1.0))
    assert (obj["meshdream_shape"], obj["meshdream_texture"]) == ("tall chair", "oak")
    material = obj.active_material
    assert material.name in added["materials"] and image_std(material) > 0.01
    bsdf = material.node_tree.nodes["Principled BSDF"]
    assert all(bsdf.inputs[name].is_linked for name in ("Base Color", "Roughness", "Metallic", "Normal"))
    assert len(added["images"]) == 4  # base colour, roughness, metallic, normal
    assert (tuple(monkey.matrix_world.col[3]), len(monkey.data.vertices), len(monkey.material_slots)) == monkey_state
    assert "UNDO" in bpy.types.MESHDREAM_OT_create.bl_options  # in the UI: one undo step that removes it all
    props.create_prompt = "an oak dragon"
    with pytest.raises(RuntimeError, match="chair, table"):
        bpy.ops.meshdream.create()  # the server's one-line answer; nothing added
    assert names(bpy.data.objects) == before["objects"] | added["objects"]


def test_cancel_leaves_the_scene_unchanged(scene):
    from blender_addon.state import STATE

    obj = bpy.context.active_object
    obj.data.uv_layers.remove(obj.data.uv_layers[0])  # so the Smart UV map added for the job must go again
    scene.meshdream.steps = 40
    state = (names(bpy.data.materials), names(bpy.data.images), names(bpy.data.objects), names(obj.data.uv_layers))
    seen = {}

    def cancel_mid_job():
        while True:
            batch = STATE.batch
            if batch is not None and batch.run is not None and batch.run.stage == "denoise" and batch.run.step >= 1:
                seen["step"] = batch.run.step
                batch.cancel()
                return
            time.sleep(0.01)

    thread = threading.Thread(target=cancel_mid_job, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    assert bpy.ops.meshdream.texture_selected() == {"CANCELLED"}
    thread.join(5)
    assert seen and time.perf_counter() - t0 < 60
    after = (names(bpy.data.materials), names(bpy.data.images), names(bpy.data.objects), names(obj.data.uv_layers))
    assert after == state
    assert STATE.batch is None and not bpy.ops.meshdream.cancel.poll()


def test_a_running_job_shows_live_views_each_replacing_the_last(scene):
    """The UI path (background mode fetches no previews): Run polls live views; each shown one replaces the last."""
    from blender_addon import backends, preview
    from blender_addon.state import STATE
    from tests.conftest import asset

    cfg = backends.config(bpy.context.preferences.addons[NAME].preferences)
    settings = dict(n_views=2, view_resolution=64, texture_size=64, steps=200)
    run = backends.Run(cfg, lambda c: c.submit_texture(str(asset("spot.obj")), "oak", **settings), preview=True)
    shown, paths = [], []
    deadline = time.monotonic() + 60
    while len(shown) < 2 and not run.finished and time.monotonic() < deadline:
        if run.preview_png is not None and run.preview_png not in shown:
            shown.append(run.preview_png)
            preview.show(run.preview_png)
            paths.append(STATE.preview_path)
        time.sleep(0.05)
    run.cancel()
    run.join(30)
    assert len(shown) == 2 and run.state == "cancelled" and run.step < 200
    assert not os.path.exists(paths[0]) and os.path.exists(paths[1]) and len(STATE.preview_collection) == 1


def test_undo_is_replaced_by_new_datablocks_in_background_mode(scene):
    """Background Blender has no undo stack; what undo would restore is left untouched (the results are new)."""
    assert not bpy.ops.ed.undo.poll()
    obj = bpy.context.active_object
    before = names(bpy.data.materials) | names(bpy.data.images)
    assert bpy.ops.meshdream.texture_selected() == {"FINISHED"}
    assert before <= names(bpy.data.materials) | names(bpy.data.images)
    assert obj.active_material.name not in before
    assert "UNDO" in bpy.types.MESHDREAM_OT_texture_selected.bl_options  # in the UI: one undo step per result


@pytest.mark.parametrize(
    "setup, message",
    [
        ("nothing", "Nothing is selected"),
        ("camera", "is a camera, not a mesh"),
        ("no_faces", "has no faces"),
    ],
)
def test_bad_selections_give_clear_reports(scene, setup, message):
    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj)
    if setup == "camera":
        bpy.ops.object.camera_add()
    elif setup == "no_faces":
        me = bpy.data.meshes.new("Points")
        me.from_pydata([(0, 0, 0), (1, 0, 0), (0, 1, 0)], [(0, 1)], [])
        obj = bpy.data.objects.new("Points", me)
        bpy.context.collection.objects.link(obj)
        obj.select_set(True)
        bpy.context.view_layer.objects.active = obj
    materials = names(bpy.data.materials)
    for op in ("texture_selected", "project_from_view", "inpaint_seams", "restyle_texture", "upscale_texture"):
        with pytest.raises(RuntimeError, match=message):
            getattr(bpy.ops.meshdream, op)()
    assert names(bpy.data.materials) == materials


INSTALL = """
import sys, bpy, addon_utils
zip_path, python, port, legacy = sys.argv[-4:]
if legacy == "1":
    bpy.ops.preferences.addon_install(filepath=zip_path)
    addon_utils.enable("meshdream", default_set=True)
    print("LEGACY OK", bpy.ops.meshdream.texture_selected.poll())
    raise SystemExit
bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
prefs = bpy.context.preferences.addons["bl_ext.user_default.meshdream"].preferences
prefs.python, prefs.port = python, int(port)
bpy.ops.mesh.primitive_monkey_add()
props = bpy.context.scene.meshdream
props.n_views, props.view_resolution, props.texture_size, props.steps = 2, 64, 64, 3
assert bpy.ops.meshdream.texture_selected() == {"FINISHED"}
node = bpy.context.active_object.active_material.node_tree.nodes.active
assert node.type == "TEX_IMAGE" and node.image.size[0] == 64
assert "meshdream" not in sys.modules, "the core was imported into Blender"
assert "bl_ext.user_default.meshdream.vendor.client" in sys.modules
print("EXTENSION OK")
"""


@pytest.mark.parametrize("legacy", [False, True], ids=["extension+worker", "legacy-addon"])
def test_the_zip_installs_in_a_fresh_blender(tmp_path, legacy):
    zip_path = build.build_addon()
    assert zip_path.name == "meshdream-0.1.0.zip"
    port = free_port()
    env = {**__import__("os").environ, "BLENDER_USER_RESOURCES": str(tmp_path / "user")}
    done = subprocess.run(
        [sys.executable, "-c", INSTALL, str(zip_path), sys.executable, str(port), "1" if legacy else "0"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert ("LEGACY OK True" if legacy else "EXTENSION OK") in done.stdout
