"""The operators. Each one turns the selection into tasks (arrays in, on the main thread) and hands them to a
`queue.Batch`, which waits for them on a thread while a modal timer polls (the UI never blocks) and applies each
result as new datablocks. In background mode (or called from a script) they run to completion synchronously."""

import time

import bpy

from . import backends, preferences, scene_io, tasks
from .queue import Batch
from .scene_io import SceneError
from .state import STATE


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
        return STATE.batch is None

    def _start(self, context):
        cfg = backends.config(preferences.get(context))
        STATE.batch = Batch(cfg, self.tasks(context))
        return STATE.batch

    def _finish(self, batch, outcome):
        STATE.batch = None
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
        return [tasks.TextureTask(context, obj) for obj in _selected_meshes(context)]


class MESHDREAM_OT_quick_texture(_JobOperator, bpy.types.Operator):
    """A preview texture on every selected mesh in seconds (the core's Quick preset: few, small views and steps);
    Refine then brings it to the full setting"""

    bl_idname = "meshdream.quick_texture"
    bl_label = "Quick"

    def tasks(self, context):
        return [tasks.TextureTask(context, obj, preset="quick") for obj in _selected_meshes(context)]


class MESHDREAM_OT_project_from_view(_JobOperator, bpy.types.Operator):
    """Paint what the current view sees of the active mesh from the prompt"""

    bl_idname = "meshdream.project_from_view"
    bl_label = "Project from View"

    def tasks(self, context):
        obj = context.active_object
        scene_io.check_mesh(obj)
        return [tasks.TextureTask(context, obj, kind="project")]


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
    task = tasks.InpaintTask


class MESHDREAM_OT_restyle_texture(_ActiveImageOperator, bpy.types.Operator):
    """Restyle the active object's image texture toward the prompt, as a new image (the original stays)"""

    bl_idname = "meshdream.restyle_texture"
    bl_label = "Restyle"
    task = tasks.RestyleTask


class MESHDREAM_OT_refine_texture(_ActiveImageOperator, bpy.types.Operator):
    """Bring the active object's Quick preview to the full setting (its image is replaced; nothing else changes)"""

    bl_idname = "meshdream.refine_texture"
    bl_label = "Refine"
    task = tasks.RefineTask


class MESHDREAM_OT_upscale_texture(_ActiveImageOperator, bpy.types.Operator):
    """Upscale the active object's image texture 2x or 4x, as a new image (the original stays)"""

    bl_idname = "meshdream.upscale_texture"
    bl_label = "Upscale"
    task = tasks.UpscaleTask


class MESHDREAM_OT_generate_shape(_JobOperator, bpy.types.Operator):
    """Generate a new shape from the prompt at the 3D cursor"""

    bl_idname = "meshdream.generate_shape"
    bl_label = "Generate Shape"

    def tasks(self, context):
        return [tasks.ShapeTask(context)]


class MESHDREAM_OT_create(_JobOperator, bpy.types.Operator):
    """Create a new textured object from the sentence at the 3D cursor (a shape the model makes, and its material)"""

    bl_idname = "meshdream.create"
    bl_label = "Create"

    def tasks(self, context):
        return [tasks.CreateTask(context)]


class MESHDREAM_OT_cancel(bpy.types.Operator):
    """Stop the running MeshDream job within one step; the scene stays as it was"""

    bl_idname = "meshdream.cancel"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context):
        return STATE.batch is not None

    def execute(self, context):
        STATE.batch.cancel()
        return {"FINISHED"}


CLASSES = (
    MESHDREAM_OT_texture_selected,
    MESHDREAM_OT_quick_texture,
    MESHDREAM_OT_refine_texture,
    MESHDREAM_OT_project_from_view,
    MESHDREAM_OT_inpaint_seams,
    MESHDREAM_OT_restyle_texture,
    MESHDREAM_OT_upscale_texture,
    MESHDREAM_OT_generate_shape,
    MESHDREAM_OT_create,
    MESHDREAM_OT_cancel,
)


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister():
    if STATE.batch is not None:
        STATE.batch.cancel()
        STATE.batch = None
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
