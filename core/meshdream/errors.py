"""One exception family, so callers (the Blender panel, the server, the CLI) can catch MeshDream's own
problems and show their message, which always says what is wrong and how to fix it."""

from __future__ import annotations


class MeshDreamError(Exception):
    """Base of every error MeshDream raises on purpose; its message is meant for the user."""


class MeshFileNotFoundError(MeshDreamError, FileNotFoundError):
    """An input file does not exist."""


class UnsupportedFormatError(MeshDreamError, ValueError):
    """A file's format is not one MeshDream reads or writes."""


class InvalidMeshError(MeshDreamError, ValueError):
    """The mesh cannot be used: no faces, non-finite vertices, only degenerate faces."""


class CameraError(MeshDreamError, ValueError):
    """A camera is malformed or does not see the mesh."""


class InvalidParameterError(MeshDreamError, ValueError):
    """An argument is out of range or of the wrong shape."""


class OutputExistsError(MeshDreamError, FileExistsError):
    """Writing would overwrite an existing file."""


class OutputWriteError(MeshDreamError, OSError):
    """An output could not be written (a full disk, no permission); nothing broken was left under its name."""


class CancelledError(MeshDreamError):
    """The caller's cancel token was set; the operation stopped and left no partial output."""


class MeshDreamWarning(UserWarning):
    """Something was repaired automatically (e.g. degenerate faces dropped); the result is still usable."""
