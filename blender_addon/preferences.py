"""Add-on preferences: which backend runs the jobs, "Set up local worker" (installs MeshDream into a private
environment) and "Check Installation" (says what is missing). Both run in the background as a `chores.Chore`;
their operators return at once and the preferences and the sidebar show the progress and a Cancel button."""

import os

import bpy
from bpy.props import EnumProperty, IntProperty, StringProperty

from . import backends, chores, install, props
from .state import STATE


def get(context):
    """This add-on's preferences, or None when it was registered without being enabled as an add-on."""
    addon = context.preferences.addons.get(__package__)
    return addon.preferences if addon else None


def is_set_up(context) -> bool:
    """Whether jobs have somewhere to run: a remote or in-process backend, or a worker's Python."""
    prefs = get(context)
    return prefs is not None and (prefs.backend != "WORKER" or bool(prefs.python.strip()))


def private_folder() -> str:
    """Where "Set up local worker" puts its environment: Blender's user data folder (kept across add-on updates)."""
    return bpy.utils.user_resource("DATAFILES", path=os.path.join("meshdream", "venv"), create=False)


class MeshDreamPreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    backend: EnumProperty(name="Backend", items=backends.BACKENDS, default="WORKER")
    python: StringProperty(
        name="Python with MeshDream",
        subtype="FILE_PATH",
        description="A python executable where MeshDream is installed; Set up local worker fills it in",
    )
    base_python: StringProperty(
        name="Python to Install With",
        subtype="FILE_PATH",
        description="Optional: the Python 3.10+ that Set up local worker builds its environment from "
        "(empty: python3 on PATH, else Blender's own)",
    )
    package_source: StringProperty(
        name="Package Source",
        subtype="DIR_PATH",
        description="Optional: a folder of wheels or a package index URL to install from instead of the internet "
        "(offline machines, mirrors)",
    )
    port: IntProperty(name="Port", default=7860, min=1, max=65535, description="Local worker's port")
    url: StringProperty(name="Server URL", default="http://127.0.0.1:7860")
    token: StringProperty(name="Token", subtype="PASSWORD", description="The server's --token, if it has one")

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "backend", expand=True)
        if self.backend == "WORKER":
            layout.prop(self, "python")
            row = layout.row()
            row.operator(MESHDREAM_OT_set_up.bl_idname, icon="IMPORT")
            row.operator(MESHDREAM_OT_check_installation.bl_idname, icon="CHECKMARK")
            draw_chore(layout)
            box = layout.box()
            box.label(text="Advanced")
            box.prop(self, "base_python")
            box.prop(self, "package_source")
            box.prop(self, "port")
            return
        if self.backend == "REMOTE":
            layout.prop(self, "url")
            layout.prop(self, "token")
        layout.operator(MESHDREAM_OT_check_installation.bl_idname, icon="CHECKMARK")
        draw_chore(layout)


def draw_chore(layout) -> None:
    """The running or last chore: its progress and Cancel, an install found to offer, or what it found."""
    chore = STATE.chore
    if chore is None:
        return
    box = layout.box()
    if not chore.finished:
        box.label(text=chore.title, icon="SORTTIME")
        col = box.column(align=True)  # short lines: the sidebar is narrow
        col.label(text=chore.status)
        if chore.detail:
            col.label(text=chore.detail)
        if hasattr(box, "progress"):  # Blender 4.0+
            box.progress(factor=chore.fraction, type="BAR", text=f"{100 * chore.fraction:.0f}%")
        else:
            col.label(text=f"{100 * chore.fraction:.0f}% done")
        box.operator(MESHDREAM_OT_cancel_chore.bl_idname, icon="CANCEL")
        return
    found = chore.result[1] if chore.state == "done" and chore.result and chore.result[0] == "found" else None
    if found:
        box.label(text=f"MeshDream is already installed: {found}", icon="CHECKMARK")
        row = box.row()
        row.operator(MESHDREAM_OT_use_existing.bl_idname, icon="CHECKMARK").python = found
        row.operator(MESHDREAM_OT_set_up.bl_idname, text="Install a New One", icon="IMPORT").fresh = True
        return
    icon = {"done": "CHECKMARK", "failed": "ERROR", "cancelled": "CANCEL"}[chore.state]
    for line in chore.lines:
        box.label(text=line, icon=icon if line is chore.lines[-1] and not chore.error else "NONE")
    if chore.error:
        box.label(text=chore.error, icon=icon)


def _report(chore) -> None:
    """Say the outcome in the status bar's report line (the preferences and the panel show the details)."""
    message = chore.error or (chore.lines[-1] if chore.lines else f"{chore.title}: {chore.state}.")
    level = "INFO" if chore.state == "done" else "WARNING" if chore.state == "cancelled" else "ERROR"
    print(f"MeshDream: {message}")
    try:
        bpy.ops.meshdream.report("INVOKE_DEFAULT", level=level, message=message)
    except RuntimeError:
        pass


def _apply_check(chore) -> None:
    """On the main thread: the models and device a successful check found."""
    check = chore.result
    if chore.state == "done" and check is not None:
        chore.lines[:] = check.lines
        if not check.ok:
            chore.state, chore.error = "failed", check.lines[-1]
            chore.lines[:] = check.lines[:-1]
        if check.models:
            props.MODEL_CHOICES[:] = check.models
        STATE.device = check.device or STATE.device
    _report(chore)


def start_check(cfg) -> None:
    chores.start("Checking", lambda chore: backends.check(cfg, chore), _apply_check)


class MESHDREAM_OT_check_installation(bpy.types.Operator):
    """Check that the chosen backend answers (in the background), and say how to fix it if it does not"""

    bl_idname = "meshdream.check_installation"
    bl_label = "Check Installation"

    @classmethod
    def poll(cls, context):
        return STATE.chore is None or STATE.chore.finished

    def execute(self, context):
        start_check(backends.config(get(context)))
        return {"FINISHED"}


class MESHDREAM_OT_set_up(bpy.types.Operator):
    """Install MeshDream and its packages (PyTorch included: several minutes) into a private environment in
    Blender's user folder, in the background, and use it as the local worker"""

    bl_idname = "meshdream.set_up"
    bl_label = "Set up local worker"

    fresh: bpy.props.BoolProperty(default=False, options={"SKIP_SAVE"}, description="Install even if one exists")

    @classmethod
    def poll(cls, context):
        return (STATE.chore is None or STATE.chore.finished) and get(context) is not None

    def execute(self, context):
        prefs = get(context)
        prefs.backend = "WORKER"
        cfg = backends.config(prefs)
        folder = private_folder()
        pointed, fresh = os.path.expanduser(prefs.base_python), self.fresh
        source = bpy.path.abspath(prefs.package_source).strip()

        def work(chore):
            if not fresh:
                found = install.find_existing(chore, folder)
                if found:
                    return ("found", found)
            python = install.set_up(chore, folder, pointed, source)
            chore.status, chore.fraction = "Starting the worker", 0.97
            check = backends.check({**cfg, "python": python}, chore)
            chore.lines.extend(check.lines[1:])
            if not check.ok:
                raise chores.ChoreError(check.lines[-1])
            return ("installed", python, check)

        chores.start("Setting up MeshDream", work, _apply_set_up)
        return {"FINISHED"}


def _apply_set_up(chore) -> None:
    """On the main thread: fill in 'Python with MeshDream' with the new environment's Python."""
    if chore.state == "done" and chore.result[0] == "installed":
        _, python, check = chore.result
        prefs = get(bpy.context)
        if prefs is not None:
            prefs.python = python
        if check.models:
            props.MODEL_CHOICES[:] = check.models
        STATE.device = check.device
        chore.lines.append("Ready: MeshDream is set up. Select a mesh and press Texture Selected.")
    if chore.state != "done" or chore.result[0] != "found":
        _report(chore)


class MESHDREAM_OT_use_existing(bpy.types.Operator):
    """Use this Python, which already has MeshDream, for the local worker (and start it to check)"""

    bl_idname = "meshdream.use_existing"
    bl_label = "Use It"

    python: StringProperty(options={"SKIP_SAVE"})

    def execute(self, context):
        prefs = get(context)
        prefs.backend, prefs.python = "WORKER", self.python
        start_check(backends.config(prefs))
        return {"FINISHED"}


class MESHDREAM_OT_cancel_chore(bpy.types.Operator):
    """Stop the set-up or check running in the background"""

    bl_idname = "meshdream.cancel_chore"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context):
        return STATE.chore is not None and not STATE.chore.finished

    def execute(self, context):
        STATE.chore.cancel()
        return {"FINISHED"}


class MESHDREAM_OT_report(bpy.types.Operator):
    """Show a message in the status bar (reports need an operator; a timer has none)"""

    bl_idname = "meshdream.report"
    bl_label = "MeshDream Report"
    bl_options = {"INTERNAL"}

    level: StringProperty(default="INFO", options={"SKIP_SAVE"})
    message: StringProperty(options={"SKIP_SAVE"})

    def execute(self, context):
        self.report({self.level}, self.message)
        return {"FINISHED"}

    def invoke(self, context, event):
        return self.execute(context)


CLASSES = (
    MeshDreamPreferences,
    MESHDREAM_OT_check_installation,
    MESHDREAM_OT_set_up,
    MESHDREAM_OT_use_existing,
    MESHDREAM_OT_cancel_chore,
    MESHDREAM_OT_report,
)


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister():
    if STATE.chore is not None:
        STATE.chore.cancel()
        STATE.chore = None
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
    backends.stop_workers()
