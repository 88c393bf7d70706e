"""The MeshDream tab of the 3D viewport's sidebar: job status on top, then one section per operator."""

import bpy

from . import backends, preferences
from .state import STATE


class _Panel:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "MeshDream"


class MESHDREAM_PT_main(_Panel, bpy.types.Panel):
    bl_label = "MeshDream"

    def draw(self, context):
        layout = self.layout
        batch = STATE.batch
        if not preferences.is_set_up(context):
            self.draw_first_run(layout)
        elif batch is None:
            prefs = preferences.get(context)
            backend = dict((key, name) for key, name, _ in backends.BACKENDS)[prefs.backend if prefs else "WORKER"]
            row = layout.row()
            row.label(text=f"{backend} on {STATE.device}" if STATE.device else backend, icon="NETWORK_DRIVE")
            row.operator("meshdream.check_installation", text="", icon="CHECKMARK")
            if STATE.chore is not None and not STATE.chore.finished:
                preferences.draw_chore(layout)
        else:
            layout.label(text=batch.label, icon="SORTTIME")
            if hasattr(layout, "progress"):  # Blender 4.0+
                layout.progress(factor=batch.fraction, type="BAR", text=batch.stage)
            else:
                layout.label(text=f"{batch.stage} ({100 * batch.fraction:.0f}%)")
            layout.operator("meshdream.cancel", icon="CANCEL")
        if STATE.preview_icon:
            box = layout.box()
            box.label(text="Views")  # live while a job runs, then its result's
            box.template_icon(icon_value=STATE.preview_icon, scale=6)

    @staticmethod
    def draw_first_run(layout):
        """Nothing to run jobs yet: one box that sets it up, instead of controls that could only fail."""
        box = layout.box()
        box.label(text="Set up MeshDream", icon="INFO")
        col = box.column(align=True)
        for line in ("Installs once, in the", "background: a few minutes", "and a few GB (PyTorch)."):
            col.label(text=line)
        box.operator("meshdream.set_up", icon="IMPORT")
        preferences.draw_chore(box)


class _SetUpPanel(_Panel):
    """The tools show once there is somewhere to run them (the first-run box stands in for them until then)."""

    @classmethod
    def poll(cls, context):
        return preferences.is_set_up(context)


class MESHDREAM_PT_texture(_SetUpPanel, bpy.types.Panel):
    bl_label = "Texture"
    bl_parent_id = "MESHDREAM_PT_main"

    def draw(self, context):
        props = context.scene.meshdream
        layout = self.layout
        layout.use_property_split = True
        layout.use_property_decorate = False  # no keyframe dots: the narrow sidebar needs the room for labels
        for name in ("prompt", "negative_prompt", "model", "strategy"):
            layout.prop(props, name)
        col = layout.column(align=True)  # short labels: the sidebar cuts long ones off
        col.prop(props, "n_views", text="Views")
        col.prop(props, "view_resolution", text="View px")
        col.prop(props, "texture_size", text="Texture px")
        col = layout.column(align=True)
        for name in ("steps", "guidance", "seed"):
            col.prop(props, name)
        if not all((props.view_resolution, props.texture_size, props.steps, props.guidance)):
            layout.label(text="0: the model's own value", icon="INFO")  # the short labels have no room to say it
        layout.prop(props, "reference_image")
        layout.prop(props, "pbr")
        layout.operator("meshdream.texture_selected", icon="TEXTURE")
        row = layout.row(align=True)  # a preview in seconds, then the full setting from it
        row.operator("meshdream.quick_texture", icon="PLAY")
        row.operator("meshdream.refine_texture", icon="SHADERFX")


class _Section(_SetUpPanel):
    """A closed-by-default section: its scene properties (name, or (name, label)), then its operator's button."""

    bl_parent_id = "MESHDREAM_PT_main"
    bl_options = {"DEFAULT_CLOSED"}
    fields = ()
    operator, icon = "", "NONE"
    split = True  # labels beside the fields

    def draw(self, context):
        props, layout = context.scene.meshdream, self.layout
        layout.use_property_split, layout.use_property_decorate = self.split, False
        for field in self.fields:
            name, *label = (field,) if isinstance(field, str) else field
            layout.prop(props, name, **({"text": label[0]} if label else {}))
        self.draw_more(layout, props)
        layout.operator(self.operator, icon=self.icon)

    def draw_more(self, layout, props):
        pass


class MESHDREAM_PT_project(_Section, bpy.types.Panel):
    bl_label = "Project from View"
    fields = ("use_viewport_image",)
    operator, icon, split = "meshdream.project_from_view", "VIEW_CAMERA", False

    def draw_more(self, layout, props):
        row = layout.row()
        row.active = props.use_viewport_image
        row.prop(props, "strength")


class MESHDREAM_PT_inpaint(_Section, bpy.types.Panel):
    bl_label = "Inpaint Seams"
    operator, icon = "meshdream.inpaint_seams", "BRUSH_DATA"


class MESHDREAM_PT_restyle(_Section, bpy.types.Panel):
    bl_label = "Restyle Texture"
    fields = ("prompt", "restyle_strength", "pbr")
    operator, icon = "meshdream.restyle_texture", "BRUSHES_ALL"


class MESHDREAM_PT_upscale(_Section, bpy.types.Panel):
    bl_label = "Upscale Texture"
    operator, icon = "meshdream.upscale_texture", "FULLSCREEN_ENTER"

    def draw_more(self, layout, props):
        layout.row().prop(props, "upscale_scale", expand=True)
        layout.prop(props, "upscaler")
        if props.upscaler == "file":
            layout.prop(props, "upscaler_file")


class MESHDREAM_PT_shape(_Section, bpy.types.Panel):
    bl_label = "Shape"
    fields = ("shape_prompt", "shape_seed", "texture_shape")
    operator, icon, split = "meshdream.generate_shape", "MESH_MONKEY", False


class MESHDREAM_PT_create(_Section, bpy.types.Panel):
    bl_label = "Create"
    fields = (("create_prompt", ""), "create_pbr")
    operator, icon, split = "meshdream.create", "MESH_MONKEY", False


CLASSES = (
    MESHDREAM_PT_main,
    MESHDREAM_PT_texture,
    MESHDREAM_PT_project,
    MESHDREAM_PT_inpaint,
    MESHDREAM_PT_restyle,
    MESHDREAM_PT_upscale,
    MESHDREAM_PT_shape,
    MESHDREAM_PT_create,
)

register, unregister = bpy.utils.register_classes_factory(CLASSES)
