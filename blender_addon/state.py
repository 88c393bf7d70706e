"""The add-on's one piece of session state, read by the panel and the preferences and written on the main thread
(threads only write the fields of their own `Run` / `chores.Chore`)."""


class State:
    def __init__(self) -> None:
        self.batch = None  # the running queue.Batch of jobs, if any
        self.chore = None  # the running or last chores.Chore (Check Installation, Set up local worker)
        self.device = None  # the device the worker reported last ("cuda", "cpu", ...), for the panel
        self.preview_collection = None  # bpy.utils.previews collection holding the views icon
        self.preview_icon = 0  # its icon id; 0: no views to show
        self.preview_count = 0  # how many views PNGs were shown (each gets a new name so Blender reloads it)
        self.preview_path = None  # the file behind the current icon, removed when replaced


STATE = State()
