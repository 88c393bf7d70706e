"""The core's cameras and renderer agree with real Blender (bpy 5.0 as a module, Cycles on the CPU)."""

import meshdream
import numpy as np
import pytest
import trimesh

bpy = pytest.importorskip("bpy")


def mesh_arrays(obj) -> trimesh.Trimesh:
    """World-space triangles and per-corner UVs of a Blender mesh object, as the add-on will hand them over."""
    me = obj.data
    me.calc_loop_triangles()
    co = np.empty(len(me.vertices) * 3)
    me.vertices.foreach_get("co", co)
    co = co.reshape(-1, 3) @ np.array(obj.matrix_world)[:3, :3].T + np.array(obj.matrix_world)[:3, 3]
    loops = np.empty(len(me.loop_triangles) * 3, np.int64)
    me.loop_triangles.foreach_get("loops", loops)
    vidx = np.empty(len(me.loops), np.int64)
    me.loops.foreach_get("vertex_index", vidx)
    uv = np.empty(len(me.loops) * 2)
    me.uv_layers.active.data.foreach_get("uv", uv)
    corners = loops.reshape(-1, 3)
    return trimesh.Trimesh(co[vidx], corners, visual=trimesh.visual.TextureVisuals(uv=uv.reshape(-1, 2)), process=False)


def test_view_matrix_and_fov_match_a_cycles_render(tmp_path):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    bpy.ops.mesh.primitive_monkey_add(location=(0.3, 0.0, 0.2), rotation=(0.3, 0.1, 0.5))
    monkey = bpy.context.active_object
    bpy.ops.object.camera_add(location=(3.0, -4.0, 2.0))
    cam_obj = bpy.context.active_object
    direction = -cam_obj.location
    cam_obj.rotation_euler = direction.to_track_quat("-Z", "Y").to_euler()
    cam_obj.data.angle = np.radians(35.0)
    scene.camera = cam_obj
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 1
    scene.cycles.device = "CPU"
    scene.render.resolution_x, scene.render.resolution_y = 96, 64
    scene.render.resolution_percentage = 100
    scene.render.film_transparent = True
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGBA"
    scene.render.filepath = str(tmp_path / "cycles.png")
    bpy.context.view_layer.update()
    bpy.ops.render.render(write_still=True)

    from PIL import Image

    alpha = np.asarray(Image.open(tmp_path / "cycles.png"))[..., 3] > 127
    mesh = meshdream.load_mesh(mesh_arrays(monkey), normalize=False)
    view = np.array(cam_obj.matrix_world.inverted())
    cam = meshdream.Camera.from_view_matrix(view, fov=35.0, resolution=(96, 64))
    mask = meshdream.render(mesh, cam).mask
    iou = (mask & alpha).sum() / (mask | alpha).sum()
    assert iou > 0.99, iou  # a wrong field of view (40 instead of 35 degrees) gives 0.76
