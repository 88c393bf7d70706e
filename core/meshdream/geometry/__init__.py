"""Geometry engine: mesh I/O and unwrapping, cameras, ray-cast rendering, UV maps, bake and padding."""

from .bake import BakeOperator, BakeResult, bake, bake_operator
from .camera import Camera, orbit_cameras
from .mesh_io import load_mesh, save_textured, to_user_frame
from .meshdata import MeshInfo, mesh_info
from .padding import dilate
from .render import ViewMaps, render, render_texture, render_views
from .texture import sample_texture
from .uvmaps import UVMaps, uv_maps

__all__ = [
    "BakeOperator",
    "BakeResult",
    "Camera",
    "MeshInfo",
    "UVMaps",
    "ViewMaps",
    "bake",
    "bake_operator",
    "dilate",
    "load_mesh",
    "mesh_info",
    "orbit_cameras",
    "render",
    "render_texture",
    "render_views",
    "sample_texture",
    "save_textured",
    "to_user_frame",
    "uv_maps",
]
