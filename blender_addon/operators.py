"""The operators. Each one turns the selection into jobs (arrays in, on the main thread), lets `backends.Run`
wait for them on a thread while a timer polls (the UI never blocks), and applies each result as new datablocks.
In background mode (or called from a script) they run to completion synchronously."""

import os
import tempfile
import time

import bpy

from . import backends, preferences, scene_io
from .scene_io import SceneError

ACTIVE = None  # the running Batch: read by the panel and the Cancel operator
PREVIEW = {"collection": None, "icon": 0, "count": 0, "path": None}  # the newest views (live or final), for the panel


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
    }
    return {k: v for k, v in out.items() if v is not None and k not in skip}


class TextureTask:
    """Texture one object: its arrays are taken now; the result becomes a new image in new materials."""

    include = ("texture",)

    def __init__(self, context, obj, kind="texture"):
        props = context.scene.meshdream
        self.obj, self.kind = obj, kind
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
        else:
            self.settings = _settings(props)

    def submit(self, c):
        common = {"model": self.model, "reference_image": self.reference, "unwrap": "never", **self.settings}
        if self.kind == "texture":
            return c.submit_texture(self.mesh, self.prompt, **common)
        try:
            return c.submit_project(self.mesh, self.prompt, camera=self.camera, init_image=self.init_image, **common)
        finally:
            self.discard_files()

    def apply(self, context, result):
        scene_io.apply_texture(self.obj, result.texture_png, self.uv_name)
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
        self.mesh = scene_io.mesh_arrays(obj, context.evaluated_depsgraph_get(), uv_name)
        self.texture, self.mask = scene_io.image_arrays(node.image)

    def apply(self, context, result):
        scene_io.apply_edited(self.obj, result.texture_png, self.source + self.suffix)
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

    def submit(self, c):
        return c.submit_restyle(
            self.mesh, self.texture, self.prompt, model=self.model, reference_image=self.reference, **self.settings
        )


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


class Batch:
    """Tasks run one after another on the chosen backend; `tick` advances and applies on the main thread."""

    def __init__(self, cfg, tasks):
        self.cfg, self.tasks = cfg, list(tasks)
        self.run, self.applied, self.error, self.cancelled = None, 0, None, False
        self._shown = None  # the views PNG the panel shows

    @property
    def label(self):
        return self.tasks[0].label if self.tasks else "Finishing"

    @property
    def fraction(self):
        return self.run.fraction if self.run else 0.0

    @property
    def stage(self):
        return f"{self.run.stage} {self.run.step}/{self.run.total}" if self.run and self.run.total else "starting"

    def cancel(self):
        self.cancelled = True
        if self.run is not None:
            self.run.cancel()

    def tick(self, context):
        """None while working; then "done", "failed" (see .error) or "cancelled"."""
        while True:
            if self.run is None:
                if self.cancelled or not self.tasks:
                    return self._end("cancelled" if self.cancelled else "done")
                task = self.tasks[0]
                self.run = backends.Run(self.cfg, task.submit, task.include, preview=not bpy.app.background)
            if not self.run.finished:
                self._show(self.run.preview_png)
                return None
            run, task, self.run = self.run, self.tasks.pop(0), None
            if run.state != "done" or self.cancelled:
                task.discard()
                self.error = run.error
                return self._end("failed" if run.state == "failed" else "cancelled")
            try:
                self.tasks[0:0] = task.apply(context, run.result)
            except SceneError as exc:
                self.error = str(exc)
                return self._end("failed")
            self.applied += 1
            self._show(run.preview_png)

    def _show(self, png_b64):
        """Replace the panel's views when the run has newer ones (Run fetches them about once a second)."""
        if png_b64 is not self._shown:
            self._shown = png_b64
            _show_preview(png_b64)

    def _end(self, outcome):
        for task in self.tasks:
            task.discard()
        self.tasks.clear()
        return outcome


def _show_preview(png_b64):
    """The views as an icon in the panel (a preview collection: no datablock is added). Each replaces the last,
    its file too, so a live preview every second leaves nothing behind; a new name makes Blender reload it."""
    collection = PREVIEW["collection"]
    if not png_b64 or collection is None:
        return
    import base64

    PREVIEW["count"] += 1
    path = os.path.join(tempfile.gettempdir(), f"meshdream-preview-{os.getpid()}-{PREVIEW['count']}.png")
    with open(path, "wb") as f:
        f.write(base64.b64decode(png_b64))
    collection.clear()
    PREVIEW["icon"] = collection.load(f"views{PREVIEW['count']}", path, "IMAGE").icon_id
    _remove_preview_file()
    PREVIEW["path"] = path


def _remove_preview_file():
    if PREVIEW["path"] is not None and os.path.exists(PREVIEW["path"]):
        os.remove(PREVIEW["path"])


def _redraw(context):
    for window in context.window_manager.windows:
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()


class _JobOperator:
    """Shared by the job operators: `tasks(context)` builds the jobs; this runs them (modal or synchronous)."""

    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return ACTIVE is None

    def _start(self, context):
        global ACTIVE
        cfg = backends.config(preferences.get(context))
        ACTIVE = Batch(cfg, self.tasks(context))
        return ACTIVE

    def _finish(self, batch, outcome):
        global ACTIVE
        ACTIVE = None
        if outcome == "failed":
            self.report({"ERROR"}, (batch.error or "The job failed.").strip().splitlines()[0])
        elif outcome == "cancelled":
            self.report({"WARNING"}, "Cancelled; the scene is unchanged." if not batch.applied else "Cancelled.")
        else:
            self.report({"INFO"}, f"MeshDream: {batch.applied} result(s) applied.")
        return {"FINISHED"} if batch.applied else {"CANCELLED"}

    def execute(self, context):
        try:
            batch = self._start(context)
        except SceneError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        while (outcome := batch.tick(context)) is None:
            time.sleep(0.05)
        return self._finish(batch, outcome)

    def invoke(self, context, event):
        if bpy.app.background:
            return self.execute(context)
        try:
            self._batch = self._start(context)
        except SceneError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.1, window=context.window)
        wm.progress_begin(0, 100)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type == "ESC" and event.value == "PRESS":
            self._batch.cancel()
            return {"RUNNING_MODAL"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}  # the UI stays usable while the job runs
        outcome = self._batch.tick(context)
        wm = context.window_manager
        _redraw(context)
        if outcome is None:
            wm.progress_update(int(100 * self._batch.fraction))
            return {"RUNNING_MODAL"}
        wm.event_timer_remove(self._timer)
        wm.progress_end()
        return self._finish(self._batch, outcome)


def _selected_meshes(context):
    selected = list(context.selected_objects)
    meshes = [o for o in selected if o.type == "MESH"]
    scene_io.check_mesh(selected[0] if selected and not meshes else (meshes or [None])[0])
    for obj in meshes:
        scene_io.check_mesh(obj)
    return meshes


class MESHDREAM_OT_texture_selected(_JobOperator, bpy.types.Operator):
    """Texture every selected mesh from the prompt (one job per object; new images and materials)"""

    bl_idname = "meshdream.texture_selected"
    bl_label = "Texture Selected"

    def tasks(self, context):
        return [TextureTask(context, obj) for obj in _selected_meshes(context)]


class MESHDREAM_OT_project_from_view(_JobOperator, bpy.types.Operator):
    """Paint what the current view sees of the active mesh from the prompt"""

    bl_idname = "meshdream.project_from_view"
    bl_label = "Project from View"

    def tasks(self, context):
        obj = context.active_object
        scene_io.check_mesh(obj)
        return [TextureTask(context, obj, kind="project")]


class _ActiveImageOperator(_JobOperator):
    """A job operator on the active object's image texture: `task` is its ImageTask."""

    def tasks(self, context):
        obj = context.active_object
        scene_io.check_mesh(obj)
        return [self.task(context, obj)]


class MESHDREAM_OT_inpaint_seams(_ActiveImageOperator, bpy.types.Operator):
    """Fill the holes (transparent texels) of the active object's image texture and smooth its UV seams"""

    bl_idname = "meshdream.inpaint_seams"
    bl_label = "Inpaint Seams"
    task = InpaintTask


class MESHDREAM_OT_restyle_texture(_ActiveImageOperator, bpy.types.Operator):
    """Restyle the active object's image texture toward the prompt, as a new image (the original stays)"""

    bl_idname = "meshdream.restyle_texture"
    bl_label = "Restyle"
    task = RestyleTask


class MESHDREAM_OT_upscale_texture(_ActiveImageOperator, bpy.types.Operator):
    """Upscale the active object's image texture 2x or 4x, as a new image (the original stays)"""

    bl_idname = "meshdream.upscale_texture"
    bl_label = "Upscale"
    task = UpscaleTask


class MESHDREAM_OT_generate_shape(_JobOperator, bpy.types.Operator):
    """Generate a new shape from the prompt at the 3D cursor"""

    bl_idname = "meshdream.generate_shape"
    bl_label = "Generate Shape"

    def tasks(self, context):
        return [ShapeTask(context)]


class MESHDREAM_OT_cancel(bpy.types.Operator):
    """Stop the running MeshDream job within one step; the scene stays as it was"""

    bl_idname = "meshdream.cancel"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context):
        return ACTIVE is not None

    def execute(self, context):
        ACTIVE.cancel()
        return {"FINISHED"}


CLASSES = (
    MESHDREAM_OT_texture_selected,
    MESHDREAM_OT_project_from_view,
    MESHDREAM_OT_inpaint_seams,
    MESHDREAM_OT_restyle_texture,
    MESHDREAM_OT_upscale_texture,
    MESHDREAM_OT_generate_shape,
    MESHDREAM_OT_cancel,
)


def register():
    import bpy.utils.previews

    PREVIEW["collection"] = bpy.utils.previews.new()
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister():
    global ACTIVE
    if ACTIVE is not None:
        ACTIVE.cancel()
        ACTIVE = None
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
    bpy.utils.previews.remove(PREVIEW["collection"])
    _remove_preview_file()
    PREVIEW.update(collection=None, icon=0, path=None)
