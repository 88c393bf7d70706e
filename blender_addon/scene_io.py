"""Scene data to the arrays the core takes, and results back into new datablocks; nothing of the user's is changed.

Meshes go out in the core's convention (Y up, front +Z, like glTF), converted by Blender's own axis_conversion,
so the core's orbit views circle the object the way an artist sees it. numpy ships with every Blender.
"""

import os
import tempfile

import bpy
import numpy as np
from bpy_extras.io_utils import axis_conversion
from mathutils import Matrix

TO_CORE = axis_conversion(from_forward="-Y", from_up="Z", to_forward="Z", to_up="Y").to_4x4()
UV_NAME = "MeshDream UV"
PREVIEW = "meshdream_preview"  # custom property of a Quick preview's image (MeshDream's own): Refine replaces it
COPY_OF = "meshdream_copy_of"  # custom property of MeshDream's material copies: the material they were first made from


class SceneError(Exception):
    """The selection cannot be used as it is; the message says why."""


def check_mesh(obj) -> None:
    if obj is None:
        raise SceneError("Nothing is selected; select one or more mesh objects.")
    if obj.type != "MESH":
        raise SceneError(f"'{obj.name}' is a {obj.type.lower()}, not a mesh; select mesh objects.")
    if not obj.data.polygons:
        raise SceneError(f"'{obj.name}' has no faces; MeshDream textures surfaces.")


def ensure_uv(obj):
    """The name of the object's active UV map, and the name of the one added (Smart UV Project) if it had none."""
    me = obj.data
    if me.uv_layers.active is not None:
        return me.uv_layers.active.name, None
    layer = me.uv_layers.new(name=UV_NAME)
    me.uv_layers.active = layer
    view_layer = bpy.context.view_layer
    active, mode = view_layer.objects.active, obj.mode
    selected = np.empty(len(me.polygons), bool)
    me.polygons.foreach_get("select", selected)
    view_layer.objects.active = obj
    try:
        with bpy.context.temp_override(
            active_object=obj, object=obj, selected_objects=[obj], selected_editable_objects=[obj]
        ):
            bpy.ops.object.mode_set(mode="EDIT")
            bpy.ops.mesh.select_all(action="SELECT")
            bpy.ops.uv.smart_project()
            bpy.ops.object.mode_set(mode=mode)
    finally:
        view_layer.objects.active = active
    me.polygons.foreach_set("select", selected)  # the user's face selection, as it was
    return layer.name, layer.name


def remove_uv(obj, name) -> None:
    """Undo ensure_uv's addition (a cancelled or failed job leaves the scene as it was)."""
    if name and name in obj.data.uv_layers:
        obj.data.uv_layers.remove(obj.data.uv_layers[name])


def mesh_arrays(obj, depsgraph, uv_name) -> dict:
    """The evaluated mesh (modifiers applied) in world space, core axes: vertices, faces, per-corner uvs."""
    evaluated = obj.evaluated_get(depsgraph)
    me = evaluated.to_mesh()
    try:
        me.transform(TO_CORE @ obj.matrix_world)
        me.calc_loop_triangles()
        n = len(me.loop_triangles)
        vertices = np.empty(len(me.vertices) * 3, np.float32)
        me.vertices.foreach_get("co", vertices)
        faces = np.empty(n * 3, np.int32)
        me.loop_triangles.foreach_get("vertices", faces)
        loops = np.empty(n * 3, np.int32)
        me.loop_triangles.foreach_get("loops", loops)
        uv = np.empty(len(me.loops) * 2, np.float32)
        me.uv_layers[uv_name].data.foreach_get("uv", uv)
    finally:
        evaluated.to_mesh_clear()
    return {
        "vertices": vertices.reshape(-1, 3),
        "faces": faces.reshape(-1, 3),
        "uvs": uv.reshape(-1, 2)[loops].reshape(-1, 3, 2),
    }


def export_obj(obj, depsgraph, uv_name, path) -> None:
    """mesh_arrays as an OBJ file, for the core's file inputs (batch jobs): per-corner UVs kept exactly, since the
    texture must fit the object's own UV map."""
    arrays = mesh_arrays(obj, depsgraph, uv_name)
    faces = arrays["faces"] + 1
    corners = np.arange(1, faces.size + 1).reshape(-1, 3)
    with open(path, "w", encoding="utf-8") as f:
        np.savetxt(f, arrays["vertices"], fmt="v %.7g %.7g %.7g")
        np.savetxt(f, arrays["uvs"].reshape(-1, 2), fmt="vt %.7g %.7g")
        np.savetxt(f, np.stack([faces, corners], -1).reshape(-1, 6), fmt="f %d/%d %d/%d %d/%d")


def view_camera(context) -> dict:
    """The viewport's camera (or, without a viewport, the scene camera's) as the server's camera dict: its aspect,
    not a resolution, so the job sizes it (the panel's view resolution, else the model's own)."""
    region, rv3d = context.region, context.region_data
    if rv3d is not None and region is not None:
        if not rv3d.is_perspective:
            raise SceneError("Project from View needs a perspective view; press Numpad 5 to leave orthographic.")
        view, proj = rv3d.view_matrix, rv3d.window_matrix
        width, height = region.width, region.height
        fov = np.degrees(2 * np.arctan(1 / min(proj[0][0], proj[1][1])))
    elif context.scene.camera is not None:
        cam = context.scene.camera
        view = cam.matrix_world.inverted()
        width, height = context.scene.render.resolution_x, context.scene.render.resolution_y
        fov = np.degrees(cam.data.angle)
    else:
        raise SceneError("No viewport and no scene camera to project from; add a camera or run this in a 3D view.")
    return {"view": np.array(view @ TO_CORE.inverted()), "fov": float(fov), "aspect": width / height}


def viewport_png(context) -> str:
    """A viewport render (OpenGL) written to a temporary PNG, for img2img; the caller deletes it."""
    bpy.ops.render.opengl(view_context=True)
    path = tempfile.mkstemp(prefix="meshdream-viewport-", suffix=".png")[1]
    bpy.data.images["Render Result"].save_render(path)
    return path


def image_node(material):
    """The material's Image Texture node that feeds Base Color (else its first Image Texture node), or None."""
    if material is None or material.node_tree is None:
        return None
    images = [n for n in material.node_tree.nodes if n.type == "TEX_IMAGE" and n.image is not None]
    for node in images:
        if any(link.to_socket.name == "Base Color" for link in node.outputs["Color"].links):
            return node
    return images[0] if images else None


def image_arrays(image) -> tuple:
    """(texture (H, W, 3) float, mask of transparent texels) in the core's row order (top row first)."""
    width, height = image.size
    pixels = np.empty(width * height * 4, np.float32)
    image.pixels.foreach_get(pixels)
    rgba = pixels.reshape(height, width, 4)[::-1]
    return np.ascontiguousarray(rgba[..., :3]), np.ascontiguousarray(rgba[..., 3] < 0.5).astype(np.uint8) * 255


def new_image(png: bytes, name: str, pack: bool = False):
    """A new image datablock: saved next to the .blend under a new file name, or packed while it is unsaved (or
    when `pack`, e.g. for a .blend saved elsewhere than the user's)."""
    if bpy.data.filepath and not pack:
        folder = os.path.dirname(bpy.data.filepath)
        stem = bpy.path.clean_name(name)
        path, n = os.path.join(folder, stem + ".png"), 1
        while os.path.exists(path):
            path, n = os.path.join(folder, f"{stem}_{n}.png"), n + 1
        with open(path, "wb") as f:
            f.write(png)
        image = bpy.data.images.load(path, check_existing=False)
        image.filepath = bpy.path.relpath(path)
    else:
        fd, path = tempfile.mkstemp(prefix="meshdream-", suffix=".png")
        with os.fdopen(fd, "wb") as f:
            f.write(png)
        image = bpy.data.images.load(path, check_existing=False)
        image.pack()
        image.filepath_raw = f"//{bpy.path.clean_name(name)}.png"  # where "Unpack" would write it
        os.remove(path)
    image.name = name
    return image


# PBR maps (a job with "pbr"): the Principled BSDF input each feeds. The normal map goes through a Normal Map node
# (tangent space, on the UV map it was baked for: glTF's convention, OpenGL +Y, which Blender reads as it is).
MAP_INPUTS = {"roughness": "Roughness", "metallic": "Metallic", "normal": "Normal"}


def _bsdf(material):
    """The material's Principled BSDF (one is added, wired to the output, if it has none)."""
    if material.node_tree is None:
        material.use_nodes = True
    nodes, links = material.node_tree.nodes, material.node_tree.links
    bsdf = next((n for n in nodes if n.type == "BSDF_PRINCIPLED"), None)
    if bsdf is None:
        bsdf = nodes.new("ShaderNodeBsdfPrincipled")
        output = next((n for n in nodes if n.type == "OUTPUT_MATERIAL"), None) or nodes.new("ShaderNodeOutputMaterial")
        links.new(bsdf.outputs[0], output.inputs["Surface"])
    return bsdf


def _image_node(material, image, uv_name, row: int):
    """An Image Texture node reading `image` through the UV map it was made for, left of the BSDF at `row`."""
    nodes, links = material.node_tree.nodes, material.node_tree.links
    bsdf = _bsdf(material)
    tex = nodes.new("ShaderNodeTexImage")
    tex.image = image
    tex.location = bsdf.location.x - 520, bsdf.location.y - 300 * row
    uv = nodes.new("ShaderNodeUVMap")
    uv.uv_map = uv_name
    uv.location = tex.location.x - 200, tex.location.y
    links.new(uv.outputs["UV"], tex.inputs["Vector"])
    return tex


def _wire_maps(material, maps: dict, uv_name):
    """Feed each PBR map image (MAP_INPUTS) into the material's Principled BSDF; they are data, not colour."""
    links, bsdf = material.node_tree.links, _bsdf(material)
    for row, (name, image) in enumerate(maps.items(), 1):
        image.colorspace_settings.name = "Non-Color"
        tex = _image_node(material, image, uv_name, row)
        if name == "normal":
            normal_map = material.node_tree.nodes.new("ShaderNodeNormalMap")
            normal_map.space, normal_map.uv_map = "TANGENT", uv_name
            normal_map.location = bsdf.location.x - 220, tex.location.y
            links.new(tex.outputs["Color"], normal_map.inputs["Color"])
            links.new(normal_map.outputs["Normal"], bsdf.inputs["Normal"])
        else:
            links.new(tex.outputs["Color"], bsdf.inputs[MAP_INPUTS[name]])
    return material


def _wire(material, image, uv_name, maps=None):
    """Feed `image` (through the UV map it was made for) into Base Color of the material's Principled BSDF, and
    the PBR map images `maps` (name -> image) into their inputs."""
    bsdf = _bsdf(material)
    tex = _image_node(material, image, uv_name, 0)
    material.node_tree.links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
    _wire_maps(material, maps or {}, uv_name)
    material.node_tree.nodes.active = tex
    return material


def map_images(maps_png: dict, name: str, pack: bool = False) -> dict:
    """The PBR maps a job returned (client Result.maps_png) as new images "<name> roughness", ..."""
    return {k: new_image(maps_png[k], f"{name} {k}", pack) for k in MAP_INPUTS if k in maps_png}


def copy_material(original):
    """A copy of `original` for a new result, named after the user's material once: "Painted MeshDream", then
    "Painted MeshDream.001", ... (never "Painted MeshDream MeshDream"). The original keeps a fake user."""
    original.use_fake_user = True
    copy = original.copy()
    base = copy[COPY_OF] = original.get(COPY_OF, original.name)
    stem = base if base.startswith("MeshDream ") else f"{base} MeshDream"
    taken = set(bpy.data.materials.keys()) - {copy.name}
    name, k = stem, 0
    while name in taken:  # numbered here: Blender versions differ on which ID keeps a name that two are given
        k += 1
        name = f"{stem}.{k:03d}"
    copy.name = name
    return copy


def apply_texture(obj, png: bytes, uv_name: str, pack: bool = False, maps_png=None):
    """The texture as a new image, in copies of the object's materials (or a new material) assigned to it; with
    `maps_png` (a pbr job's roughness, metallic and normal PNGs) those too, in the same Principled BSDF. The
    originals keep a fake user, so a saved .blend still holds them once nothing uses them."""
    image = new_image(png, f"MeshDream {obj.name}", pack)
    maps = map_images(maps_png or {}, f"MeshDream {obj.name}", pack)
    slots = [s for s in obj.material_slots if s.material is not None]
    if not slots:
        material = _wire(bpy.data.materials.new(f"MeshDream {obj.name}"), image, uv_name, maps)
        if obj.material_slots:
            obj.material_slots[obj.active_material_index].material = material
        else:
            obj.data.materials.append(material)
        return image
    copies = {}
    for slot in slots:
        original = slot.material
        if original.name not in copies:
            copies[original.name] = _wire(copy_material(original), image, uv_name, maps)
        slot.material = copies[original.name]
    return image


def apply_edited(obj, png: bytes, name: str, maps_png=None):
    """An edited texture (inpainted, restyled, upscaled) as a new image `name` in a copy of the active material, in
    the node the source came from; with `maps_png` (a pbr restyle's maps) those too, on the active UV map. The
    source image and material are untouched; the material keeps a fake user, so it stays in the .blend to switch
    back to."""
    original = obj.active_material
    node = image_node(original)
    image = new_image(png, name)
    copy = copy_material(original)
    copy.node_tree.nodes[node.name].image = image
    if maps_png:
        _wire_maps(copy, map_images(maps_png, name), obj.data.uv_layers.active.name)
    obj.material_slots[obj.active_material_index].material = copy
    return image


def replace_image(obj, png: bytes, name: str, maps_png=None):
    """A refined texture in place of MeshDream's own image `name` (a Quick preview), wherever it is used, under the
    same name; with `maps_png` (a pbr job's maps) those too, in the object's materials that show it."""
    old = bpy.data.images[name]
    image = new_image(png, name + " refined")
    materials = [s.material for s in obj.material_slots if s.material and image_node(s.material).image == old]
    old.user_remap(image)
    bpy.data.images.remove(old)
    image.name = name
    maps = map_images(maps_png or {}, name)
    for material in materials if maps else ():
        _wire_maps(material, maps, obj.data.uv_layers.active.name)
    return image


def add_shape(context, mesh: dict, name: str):
    """A new mesh object from the core's arrays (core axes) at the 3D cursor, selected and active."""
    vertices = np.asarray(mesh["vertices"], np.float32)
    faces = np.asarray(mesh["faces"], np.int32)
    me = bpy.data.meshes.new(name)
    me.from_pydata(vertices.tolist(), [], faces.tolist())
    uv = me.uv_layers.new(name="UVMap")
    uv.data.foreach_set("uv", np.asarray(mesh["uvs"], np.float32).ravel())
    me.validate()
    obj = bpy.data.objects.new(name, me)
    context.collection.objects.link(obj)
    obj.matrix_world = Matrix.Translation(context.scene.cursor.location) @ TO_CORE.inverted()
    for other in context.selected_objects:
        other.select_set(False)
    obj.select_set(True)
    context.view_layer.objects.active = obj
    return obj
