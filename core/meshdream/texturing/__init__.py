"""Diffusion texturing: strategies (sync, sequential, project), UV inpainting, seamless tiles."""

from .inpaint import inpaint_uv
from .pipeline import STRATEGIES, texture_mesh
from .result import TextureResult
from .tiling import seamless_texture

__all__ = ["STRATEGIES", "TextureResult", "inpaint_uv", "seamless_texture", "texture_mesh"]
