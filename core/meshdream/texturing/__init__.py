"""Diffusion texturing: strategies (sync, sequential, project), restyling, UV inpainting, seamless tiles."""

from .inpaint import inpaint_uv
from .pipeline import STRATEGIES, texture_mesh
from .restyle import restyle_texture
from .result import TextureResult
from .tiling import seamless_texture

__all__ = ["STRATEGIES", "TextureResult", "inpaint_uv", "restyle_texture", "seamless_texture", "texture_mesh"]
