"""The views of the newest job (live while it runs, then the result's) as an icon for the panel."""

import base64
import os
import tempfile

from .state import STATE


def show(png_b64) -> None:
    """Replace the icon (a preview collection: no datablock is added). Each replaces the last, its file too, so a
    live preview every second leaves nothing behind; a new name makes Blender reload it."""
    collection = STATE.preview_collection
    if not png_b64 or collection is None:
        return
    STATE.preview_count += 1
    path = os.path.join(tempfile.gettempdir(), f"meshdream-preview-{os.getpid()}-{STATE.preview_count}.png")
    with open(path, "wb") as f:
        f.write(base64.b64decode(png_b64))
    collection.clear()
    STATE.preview_icon = collection.load(f"views{STATE.preview_count}", path, "IMAGE").icon_id
    _remove_file()
    STATE.preview_path = path


def _remove_file() -> None:
    if STATE.preview_path is not None and os.path.exists(STATE.preview_path):
        os.remove(STATE.preview_path)


def register() -> None:
    import bpy.utils.previews

    STATE.preview_collection = bpy.utils.previews.new()


def unregister() -> None:
    import bpy.utils.previews

    bpy.utils.previews.remove(STATE.preview_collection)
    _remove_file()
    STATE.preview_collection, STATE.preview_icon, STATE.preview_path = None, 0, None
