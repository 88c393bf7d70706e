"""MeshDream for Blender: the 3D viewport's MeshDream sidebar tab. All texturing happens in the core (a worker
process, in-process, or a remote server); this add-on only turns scene data into arrays and results into new
datablocks."""

bl_info = {
    "name": "MeshDream",
    "author": "MeshDream developers",
    "version": (0, 1, 0),
    "blender": (3, 4, 0),
    "location": "3D Viewport > Sidebar > MeshDream",
    "description": "Texture meshes and generate shapes with diffusion models",
    "category": "Material",
}

try:
    import numpy  # noqa: F401  (scene_io's arrays)
except ImportError as exc:  # official Blender builds bundle numpy; some Linux distributions' packages do not
    raise ImportError(
        f"MeshDream needs numpy in Blender's Python ({exc}); on Debian/Ubuntu: sudo apt install python3-numpy"
    ) from None

from . import operators, panel, preferences, preview, props  # noqa: E402

MODULES = (preferences, props, preview, operators, panel)


def register():
    for module in MODULES:
        module.register()


def unregister():
    for module in reversed(MODULES):
        module.unregister()
