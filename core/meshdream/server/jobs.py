"""Jobs and results as typed dataclasses: what the HTTP layer decodes a request into and the worker runs.

Inputs stay in the caller's coordinates here; `MeshInput.load` and `CameraInput.camera` bring them into the
normalized frame `load_mesh` uses, and results go back through the mesh's `to_normalized` metadata.
"""

from __future__ import annotations

import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import trimesh

from ..geometry import Camera, load_mesh
from ..progress import CancelToken, ProgressCallback

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED = (DONE, FAILED, CANCELLED)


@dataclass(frozen=True)
class ModelSpec:
    """A `load_generator` call: the spec plus its keyword options (sorted, so equal specs share one cache entry)."""

    spec: str = "builtin"
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def key(self) -> str:
        return self.spec + "".join(f" {k}={v}" for k, v in self.options)


@dataclass
class MeshInput:
    """A mesh in the caller's coordinates: arrays (per-corner UVs optional) or an uploaded file's bytes."""

    vertices: Optional[np.ndarray] = None  # (N, 3)
    faces: Optional[np.ndarray] = None  # (F, 3)
    uvs: Optional[np.ndarray] = None  # (F, 3, 2) per corner, as DCC tools store them
    file_name: Optional[str] = None
    file_data: Optional[bytes] = None
    unwrap: str = "auto"
    uv_set: int = 0  # the glTF UV set (TEXCOORD_n) of an uploaded .glb to texture

    def load(
        self, progress: Optional[ProgressCallback] = None, cancel: Optional[CancelToken] = None
    ) -> trimesh.Trimesh:
        """The mesh in MeshDream's normalized frame; its metadata keeps the way back to the caller's frame.
        progress / cancel: load_mesh's (an unwrap of a large mesh reports progress and stops on cancel)."""
        options = {"unwrap": self.unwrap, "uv_set": self.uv_set, "progress": progress, "cancel": cancel}
        if self.file_data is not None:
            with tempfile.TemporaryDirectory(prefix="meshdream-upload-") as tmp:
                # Only the base name is kept (the upload never names a server path); odd characters become "_".
                path = Path(tmp) / re.sub(r"[^\w.-]", "_", Path(self.file_name).name)
                path.write_bytes(self.file_data)
                return load_mesh(path, **options)
        if self.uvs is None:
            return load_mesh(trimesh.Trimesh(self.vertices, self.faces, process=False), **options)
        # One vertex per corner carries its UV; load_mesh merges corners that share position and UV again.
        corners = np.arange(self.faces.size).reshape(-1, 3)
        mesh = trimesh.Trimesh(self.vertices[self.faces].reshape(-1, 3), corners, process=False)
        mesh.visual = trimesh.visual.TextureVisuals(uv=self.uvs.reshape(-1, 2))
        return load_mesh(mesh, **options)


@dataclass
class CameraInput:
    """A DCC camera: 4x4 world-to-camera (view) matrix in the caller's coordinates, FOV in degrees. Without a
    resolution its size is the job's: a viewport knows its shape, not the pixels that suit the model."""

    view: np.ndarray
    fov: float = 40.0
    resolution: Union[int, tuple[int, int], None] = None  # None: `view_resolution` on the larger side, at `aspect`
    aspect: float = 1.0  # width / height

    def camera(self, to_normalized, view_resolution: int) -> Camera:
        """The core's camera in the normalized frame; view_resolution: the job's (the model's unless the settings
        name one), which sizes a camera that left its resolution open."""
        size = self.resolution or fit_size(view_resolution, self.aspect)
        return Camera.from_view_matrix(self.view, self.fov, size).transformed(np.asarray(to_normalized))


def fit_size(longest: int, aspect: float) -> tuple[int, int]:
    """(width, height) at width / height = `aspect` with `longest` pixels on the larger side, each rounded to a
    multiple of 8 (what latent models need)."""
    width, height = (longest, longest / aspect) if aspect >= 1 else (longest * aspect, longest)
    return max(8, round(width / 8) * 8), max(8, round(height / 8) * 8)


@dataclass
class Request:
    """A job as the worker runs it: its kind (meshdream.jobs.KINDS), the core function's inputs and settings.

    mesh: loaded (into the normalized frame) before the call; inputs: the function's other inputs as they go
    in (prompt, texture, mask, init_image, reference_image); model: the texture generator, by spec;
    inpaint_model: texture_mesh's inpaint_generator; cameras: placed once the mesh is loaded; mesh_settings:
    for shapes, points_to_mesh's keywords (None: points only)."""

    kind: str
    settings: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    mesh: Optional[MeshInput] = None
    model: Optional[ModelSpec] = None
    inpaint_model: Optional[ModelSpec] = None
    cameras: Optional[list[CameraInput]] = None
    mesh_settings: Optional[dict[str, Any]] = None


@dataclass
class JobResult:
    timings: dict[str, float]
    texture: Optional[np.ndarray] = None  # (S, S, 3) float (with pages: their atlas)
    textures: dict[str, np.ndarray] = field(default_factory=dict)  # pages (TextureResult.textures), if any
    weight: Optional[np.ndarray] = None  # (S, S) bake confidence
    views: list[np.ndarray] = field(default_factory=list)  # generated view images
    mesh: Optional[trimesh.Trimesh] = None  # normalized (load_mesh) mesh the texture belongs to
    points: Optional[np.ndarray] = None  # (N, 3) shape points
    maps: dict[str, np.ndarray] = field(default_factory=dict)  # PBR maps (TextureResult.maps), with settings.pbr
    page_maps: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # per page (TextureResult.page_maps)
    prompts: dict[str, str] = field(default_factory=dict)  # create: what the shape and the texture model were given

    @property
    def nbytes(self) -> int:
        """The memory its arrays hold: what the server's result budget (serve --keep-results-mb) counts."""
        arrays = [self.texture, self.weight, self.points, *self.textures.values(), *self.views]
        arrays += [m for name, m in self.maps.items() if name != "base_color"]  # base_color is `texture`
        arrays += [m for page in self.page_maps.values() for name, m in page.items() if name != "base_color"]
        if self.mesh is not None:
            arrays += [self.mesh.vertices, self.mesh.faces, getattr(self.mesh.visual, "uv", None)]
        return sum(a.nbytes for a in arrays if a is not None)


@dataclass(eq=False)  # one object per job: identity, not field-by-field (numpy) comparison
class Job:
    id: str
    kind: str
    request: Optional[Request]  # dropped once the job has finished
    state: str = QUEUED
    stage: str = ""
    step: int = 0
    total: int = 0
    message: str = ""
    error: Optional[str] = None
    warnings: list[str] = field(default_factory=list)  # MeshDreamWarnings raised while it ran
    result: Optional[JobResult] = None
    submitted: float = field(default_factory=time.time)
    started: Optional[float] = None
    finished: Optional[float] = None
    cancel_token: CancelToken = field(default_factory=CancelToken)
    cancel_step: Optional[int] = None  # the step running when cancel arrived: it stops within one step of it
    preview: Optional[np.ndarray] = None  # while running: the newest denoising preview, (B, h, w, 3) uint8
    version: int = 0  # bumped on every change, so a long poll can wait for "newer than what I saw"
    expires: Optional[float] = None  # once finished: when the server forgets it (serve --keep-results-s)
    fetched: Optional[float] = None  # when its result was first fetched: fetched results are evicted first
    nbytes: int = 0  # its result's size, counted against serve --keep-results-mb
