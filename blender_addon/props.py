"""Job settings, stored per scene in `scene.meshdream` so they are saved with the .blend."""

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty

# Filled by "Check installation" from the backend's /v1/models, so the model field can suggest what is available.
MODEL_CHOICES = ["builtin"]


def _models(self, context, text):
    return [m for m in MODEL_CHOICES if text.lower() in m.lower()]


def _model_property():
    """A free-text model spec (a path or cached id works too) with suggestions; `search` needs Blender 3.3+."""
    kwargs = dict(name="Model", default="builtin", description="builtin, a cached Hugging Face id, or a path")
    try:
        return StringProperty(search=_models, **kwargs)
    except TypeError:
        return StringProperty(**kwargs)


class MeshDreamSettings(bpy.types.PropertyGroup):
    prompt: StringProperty(name="Prompt", default="red brick", description="What the texture shows")
    negative_prompt: StringProperty(name="Negative", default="", description="Empty: the model's default")
    model: _model_property()
    strategy: EnumProperty(
        name="Strategy",
        items=[
            ("sync", "Sync", "Synchronized: all views denoised together through one shared texture"),
            ("sequential", "Sequential", "View after view"),
        ],
        default="sync",
    )
    n_views: IntProperty(name="Views", default=8, min=1, max=32)
    view_resolution: IntProperty(
        name="View Resolution",
        default=0,
        min=0,
        max=2048,
        step=64,
        description="Pixels per view (the larger side from a viewport); 0: the model's own, e.g. 512 for SD 1.5",
    )
    texture_size: IntProperty(
        name="Texture Size",
        default=0,
        min=0,
        max=8192,
        description="Texture width and height, a power of two; 0: the model's own, e.g. 1024 for SD 1.5",
    )
    steps: IntProperty(name="Steps", default=0, min=0, max=200, description="0: the model's default")
    guidance: FloatProperty(name="Guidance", default=0.0, min=0.0, max=30.0, description="0: the model's default")
    seed: IntProperty(name="Seed", default=0, min=0)
    pbr: BoolProperty(
        name="PBR",
        default=False,
        description="Also make roughness, metallic and a normal map, wired into the new material's Principled BSDF",
    )
    reference_image: StringProperty(name="Reference", subtype="FILE_PATH", description="Optional style image")
    use_viewport_image: BoolProperty(
        name="Viewport as Source", default=False, description="Start from a viewport render (img2img)"
    )
    strength: FloatProperty(name="Strength", default=0.6, min=0.0, max=1.0, description="How much img2img changes")
    restyle_strength: FloatProperty(
        name="Strength", default=0.5, min=0.0, max=1.0, description="0 keeps the texture, 1 replaces it"
    )
    upscale_scale: EnumProperty(
        name="Scale", items=[("2", "2x", "Twice the width and height"), ("4", "4x", "Four times")], default="2"
    )
    upscaler: EnumProperty(
        name="Upscaler",
        items=[
            ("builtin", "Built-in", "MeshDream's own small super-resolution model: fast, offline"),
            ("lanczos", "Lanczos", "A plain Lanczos resize"),
            ("file", "Model File", "An ESRGAN-family .pth / .safetensors file or a diffusers x4 upscaler folder"),
        ],
        default="builtin",
    )
    upscaler_file: StringProperty(
        name="Model", subtype="FILE_PATH", description="Upscaler model file or folder, on the machine the jobs run on"
    )
    shape_prompt: StringProperty(name="Shape", default="chair", description="A category, e.g. 'tall chair'")
    shape_seed: IntProperty(name="Seed", default=0, min=0)
    texture_shape: BoolProperty(name="Texture It", default=False, description="Texture the new shape with the prompt")
    create_prompt: StringProperty(
        name="Prompt", default="a tall oak chair", description="A shape and its material, e.g. 'a red velvet armchair'"
    )
    create_pbr: BoolProperty(
        name="PBR", default=False, description="Also make roughness, metallic and a normal map for the new material"
    )


def register():
    bpy.utils.register_class(MeshDreamSettings)
    bpy.types.Scene.meshdream = PointerProperty(type=MeshDreamSettings)


def unregister():
    del bpy.types.Scene.meshdream
    bpy.utils.unregister_class(MeshDreamSettings)
