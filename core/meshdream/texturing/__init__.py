"""Diffusion texturing: strategies (sync, sequential, project), UV inpainting, seamless tiles."""

from .inpaint import inpaint_uv
from .pipeline import STRATEGIES, texture_mesh
from .result import TextureResult

__all__ = ["STRATEGIES", "TextureResult", "inpaint_uv", "texture_mesh"]
