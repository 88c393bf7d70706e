"""What one job is: each task takes its arrays from the scene when it is made (main thread), submits itself to a
`client.Client` (on the job thread), and applies its result as new datablocks (main thread again)."""

import os

import bpy

from . import scene_io
from .scene_io import SceneError


def _settings(props, *skip):
    """The texture_mesh keywords the panel sets; 0 / empty mean the model's default and are left out."""
    out = {
        "strategy": props.strategy,
        "n_views": props.n_views,
        "view_resolution": props.view_resolution or None,
        "texture_size": props.texture_size or None,
        "seed": props.seed,
        "steps": props.steps or None,
        "guidance": props.guidance or None,
        "negative_prompt": props.negative_prompt or None,
        "pbr": props.pbr or None,  # left out when off: a server from before PBR takes the job
    }
    return {k: v for k, v in out.items() if v is not None and k not in skip}


def _include(settings) -> tuple:
    """The result parts a job's apply needs: the texture, and its PBR maps when it makes them."""
    return ("texture", "roughness", "metallic", "normal") if settings.get("pbr") else ("texture",)


# Settings a core preset (meshdream.presets) sets: the panel's are left out of a preset's job.
PRESET_SIZES = ("n_views", "view_resolution", "texture_size", "steps")


class TextureTask:
    """Texture one object: its arrays are taken now; the result becomes a new image in new materials. With
    `preset="quick"` the sizes are the core's Quick preset's and the image is marked as a preview, for Refine."""

    include = ("texture",)

    def __init__(self, context, obj, kind="texture", preset=None):
        props = context.scene.meshdream
        self.obj, self.kind, self.preset = obj, kind, preset
        self.label = f"{'Projecting onto' if kind == 'project' else 'Texturing'} {obj.name}"
        self.uv_name, self.added_uv = scene_io.ensure_uv(obj)
        self.mesh = scene_io.mesh_arrays(obj, context.evaluated_depsgraph_get(), self.uv_name)
        self.prompt, self.model = props.prompt, props.model or None
        self.reference = bpy.path.abspath(props.reference_image) if props.reference_image else None
        self.init_image = None
        if kind == "project":
            self.settings = _settings(props, "strategy", "n_views")  # view_resolution sizes the camera, server-side
            self.camera = scene_io.view_camera(context)
            if props.use_viewport_image:
                self.init_image = scene_io.viewport_png(context)
                self.settings["strength"] = props.strength
        elif preset:
            self.settings = {**_settings(props, *PRESET_SIZES, "pbr"), "preset": preset}  # a preview: no PBR maps
        else:
            self.settings = _settings(props)
        self.include = _include(self.settings)

    def submit(self, c):
        common = {"model": self.model, "reference_image": self.reference, "unwrap": "never", **self.settings}
        if self.kind == "texture":
            return c.submit_texture(self.mesh, self.prompt, **common)
        try:
            return c.submit_project(self.mesh, self.prompt, camera=self.camera, init_image=self.init_image, **common)
        finally:
            self.discard_files()

    def apply(self, context, result):
        image = scene_io.apply_texture(self.obj, result.texture_png, self.uv_name, maps_png=result.maps_png)
        if self.preset == "quick":
            image[scene_io.PREVIEW] = True
        return []

    def discard_files(self):
        if self.init_image and os.path.exists(self.init_image):
            os.remove(self.init_image)

    def discard(self):
        self.discard_files()
        scene_io.remove_uv(self.obj, self.added_uv)


class ImageTask:
    """A job on the active object's image texture (the one feeding Base Color), on its active UV map: the result
    becomes a new image named after the source plus `suffix`, in a copy of the material (scene_io.apply_edited).
    Subclasses set `verb` and `suffix` and submit their job."""

    include = ("texture",)
    verb = suffix = ""

    def __init__(self, context, obj):
        node = scene_io.image_node(obj.active_material)
        if node is None:
            raise SceneError(f"'{obj.name}' has no image texture in its active material; texture it first.")
        width, height = node.image.size
        if width != height or width == 0:
            raise SceneError(f"'{node.image.name}' is {width}x{height}; MeshDream edits square textures only.")
        uv_name = obj.data.uv_layers.active.name if obj.data.uv_layers.active else None
        if uv_name is None:
            raise SceneError(f"'{obj.name}' has no UV map for its image texture.")
        self.obj, self.label, self.source = obj, f"{self.verb} {obj.name}", node.image.name
        self.preview = bool(node.image.get(scene_io.PREVIEW))
        self.mesh = scene_io.mesh_arrays(obj, context.evaluated_depsgraph_get(), uv_name)
        self.texture, self.mask = scene_io.image_arrays(node.image)

    def apply(self, context, result):
        scene_io.apply_edited(self.obj, result.texture_png, self.source + self.suffix, result.maps_png)
        return []

    def discard(self):
        pass


class InpaintTask(ImageTask):
    """Fill the transparent texels of the image texture and smooth its UV seams."""

    verb, suffix = "Inpainting seams of", " MeshDream"

    def __init__(self, context, obj):
        super().__init__(context, obj)
        props = context.scene.meshdream
        self.settings = {"seed": props.seed, "prompt": props.prompt}

    def submit(self, c):
        return c.submit_inpaint(self.mesh, self.texture, mask=self.mask, unwrap="never", **self.settings)


class RestyleTask(ImageTask):
    """Re-denoise the image texture toward the prompt, at the panel's restyle strength."""

    verb, suffix = "Restyling", "_restyled"

    def __init__(self, context, obj):
        super().__init__(context, obj)
        props = context.scene.meshdream
        self.prompt, self.model = props.prompt, props.model or None
        self.reference = bpy.path.abspath(props.reference_image) if props.reference_image else None
        self.settings = {
            **_settings(props, "strategy", "texture_size", "negative_prompt"),
            "strength": props.restyle_strength,
        }
        self.include = _include(self.settings)

    def submit(self, c):
        return c.submit_restyle(
            self.mesh, self.texture, self.prompt, model=self.model, reference_image=self.reference, **self.settings
        )


class RefineTask(ImageTask):
    """A Quick preview restyled at the panel's settings (those left at 0: the core's "full" preset, the model's
    own) and restyle's default strength: the preview's layout carries on at full quality instead of starting over.
    The preview's image, MeshDream's own, is replaced wherever it is used."""

    verb = "Refining"

    def __init__(self, context, obj):
        super().__init__(context, obj)
        if not self.preview:
            raise SceneError(f"'{self.source}' is not a Quick preview; click Quick first (Restyle edits any texture).")
        props = context.scene.meshdream
        self.prompt, self.model = props.prompt, props.model or None
        self.settings = {**_settings(props, "strategy", "negative_prompt"), "preset": "full"}
        self.include = _include(self.settings)

    def submit(self, c):
        return c.submit_restyle(self.mesh, self.texture, self.prompt, model=self.model, **self.settings)

    def apply(self, context, result):
        scene_io.replace_image(self.obj, result.texture_png, self.source, result.maps_png)
        return []


class UpscaleTask(ImageTask):
    """The image texture 2x or 4x, chart by chart, with the panel's upscaler (a name, or a model file's path)."""

    verb = "Upscaling"

    def __init__(self, context, obj):
        super().__init__(context, obj)
        props = context.scene.meshdream
        self.suffix = f"_x{props.upscale_scale}"
        upscaler = props.upscaler
        if upscaler == "file":
            if not props.upscaler_file.strip():
                raise SceneError("Choose the upscaler's model file (or pick Built-in or Lanczos).")
            upscaler = bpy.path.abspath(props.upscaler_file)
        self.settings = {"scale": int(props.upscale_scale), "seed": props.seed, "upscaler": upscaler}

    def submit(self, c):
        return c.submit_upscale(self.mesh, self.texture, **self.settings)


class ShapeTask:
    """A new shape from a prompt, added at the 3D cursor (and textured afterwards when asked)."""

    include = ("mesh",)

    def __init__(self, context):
        props = context.scene.meshdream
        self.prompt, self.texture = props.shape_prompt, props.texture_shape
        self.settings = {"seed": props.shape_seed, "steps": props.steps or None}
        self.label = f"Generating '{self.prompt}'"

    def submit(self, c):
        return c.submit_shape(self.prompt, mesh=True, **{k: v for k, v in self.settings.items() if v is not None})

    def apply(self, context, result):
        obj = scene_io.add_shape(context, result.mesh, self.prompt.strip().title() or "Shape")
        return [TextureTask(context, obj)] if self.texture else []

    def discard(self):
        pass


class CreateTask:
    """A new textured object from a sentence (create_asset): the mesh at the 3D cursor, named after the sentence,
    with a new material holding its texture (and PBR maps when asked); what each model understood is kept in the
    object's "meshdream_shape" and "meshdream_texture" properties."""

    def __init__(self, context):
        props = context.scene.meshdream
        self.prompt, self.model = props.create_prompt.strip(), props.model or None
        if not self.prompt:
            raise SceneError("Describe what to create, e.g. 'a tall oak chair'.")
        self.settings = {**_settings(props, "strategy", "negative_prompt", "pbr"), "pbr": props.create_pbr or None}
        self.settings = {k: v for k, v in self.settings.items() if v is not None}
        self.include = ("mesh", *_include(self.settings))
        self.label = f"Creating '{self.prompt}'"

    def submit(self, c):
        return c.submit_create(self.prompt, model=self.model, **self.settings)

    def apply(self, context, result):
        obj = scene_io.add_shape(context, result.mesh, self.prompt)
        scene_io.apply_texture(obj, result.texture_png, obj.data.uv_layers[0].name, maps_png=result.maps_png)
        obj["meshdream_shape"] = result.prompts.get("shape", "")
        obj["meshdream_texture"] = result.prompts.get("texture", "")
        return []

    def discard(self):
        pass
