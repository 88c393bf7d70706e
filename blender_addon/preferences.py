"""Add-on preferences: which backend runs the jobs, and the "Check installation" button that says what is missing."""

import bpy
from bpy.props import EnumProperty, IntProperty, StringProperty

from . import backends, props

CHECK_LINES = []  # the last check's findings, shown under the button


def get(context):
    """This add-on's preferences, or None when it was registered without being enabled as an add-on."""
    addon = context.preferences.addons.get(__package__)
    return addon.preferences if addon else None


class MeshDreamPreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    backend: EnumProperty(name="Backend", items=backends.BACKENDS, default="WORKER")
    python: StringProperty(
        name="Python with MeshDream",
        subtype="FILE_PATH",
        description="A python executable where `pip install 'meshdream[server]'` was run, e.g. <repo>/.venv/bin/python",
    )
    port: IntProperty(name="Port", default=7860, min=1, max=65535, description="Local worker's port")
    url: StringProperty(name="Server URL", default="http://127.0.0.1:7860")
    token: StringProperty(name="Token", subtype="PASSWORD", description="The server's --token, if it has one")

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "backend", expand=True)
        if self.backend == "WORKER":
            layout.prop(self, "python")
            layout.prop(self, "port")
        elif self.backend == "REMOTE":
            layout.prop(self, "url")
            layout.prop(self, "token")
        layout.operator(MESHDREAM_OT_check_installation.bl_idname, icon="CHECKMARK")
        if CHECK_LINES:
            box = layout.box()
            for line in CHECK_LINES:
                box.label(text=line)


class MESHDREAM_OT_check_installation(bpy.types.Operator):
    """Check that the chosen backend answers, and say how to fix it if it does not"""

    bl_idname = "meshdream.check_installation"
    bl_label = "Check Installation"

    def execute(self, context):
        ok, lines, models = backends.check(backends.config(get(context)))
        CHECK_LINES[:] = lines
        if models:
            props.MODEL_CHOICES[:] = models
        self.report({"INFO"} if ok else {"ERROR"}, " ".join(lines))
        return {"FINISHED"} if ok else {"CANCELLED"}


CLASSES = (MeshDreamPreferences, MESHDREAM_OT_check_installation)

register, unregister = bpy.utils.register_classes_factory(CLASSES)
