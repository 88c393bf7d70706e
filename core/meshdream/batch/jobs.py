"""What a batch is made of: items (one mesh, prompt, settings, output name) and their results, read from files,
folders or a jobs.jsonl. Light imports only: the command line builds items before any model is loaded."""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Mapping, Optional, Sequence

from ..errors import InvalidParameterError, MeshFileNotFoundError

DONE, FAILED, SKIPPED = "done", "failed", "skipped"
STATUSES = (DONE, FAILED, SKIPPED)
MESH_SUFFIXES = (".obj", ".glb", ".gltf", ".ply", ".stl", ".off")  # what load_mesh reads
OUTPUT_SUFFIXES = (".glb", ".obj")  # what save_textured writes
# texture_mesh keywords a batch item may set; anything else is a typo worth an error before hours of work.
SETTINGS = (
    "strategy",
    "n_views",
    "view_resolution",
    "texture_size",
    "seed",
    "steps",
    "guidance",
    "negative_prompt",
    "directions",
    "refine_scale",
    "refine_strength",
)
UNWRAP = ("auto", "always", "never")
JOB_KEYS = ("input", "prompt", "settings", "output", "source", "unwrap", "uv_set")


@dataclass(frozen=True)
class BatchItem:
    """One job: texture `input` from `prompt` with texture_mesh `settings`, written to `output` in the out folder.

    source: what summary.json calls the input (e.g. "scene.blend:Suzanne" for a mesh Blender exported to a
    temporary file); None means the input path itself. unwrap: load_mesh's option ("never" keeps a DCC UV map).
    uv_set: load_mesh's too, the UV set (TEXCOORD_n) of a glTF / GLB input to texture.
    """

    input: str
    prompt: str
    output: str  # relative to the out folder; .glb or .obj
    settings: Mapping[str, Any] = field(default_factory=dict)
    source: Optional[str] = None
    unwrap: str = "auto"
    uv_set: int = 0

    @property
    def name(self) -> str:
        """Short label for progress lines."""
        return self.source or Path(self.input).name


@dataclass
class ItemResult:
    """One line of summary.json; `input` and `output` are absolute paths (the input's `source` when it has one)."""

    input: str
    output: str
    status: str  # done, failed or skipped (done by an earlier run)
    seconds: float = 0.0
    attempts: int = 0
    error: Optional[str] = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ItemResult":
        return cls(**{k: data.get(k) for k in ("input", "output", "status", "seconds", "attempts", "error")})


def check_settings(settings: Mapping[str, Any], where: str) -> dict:
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise InvalidParameterError(f"{where}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(SETTINGS)}.")
    return dict(settings)


def _output_name(name: str, where: str) -> str:
    """A relative .glb/.obj path inside the out folder (no absolute paths, no '..')."""
    path = PurePosixPath(name.replace("\\", "/"))
    if not path.suffix:
        path = path.with_suffix(".glb")
    if path.is_absolute() or ".." in path.parts or path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise InvalidParameterError(
            f"{where}: output {name!r} must be a .glb or .obj name inside the out folder (no absolute path, no '..')."
        )
    return str(path)


def _stem(path: str) -> str:
    return re.sub(r"[^\w.-]", "_", Path(path).stem) or "mesh"


def _unique(items: list[BatchItem]) -> list[BatchItem]:
    """Give items whose output names clash (spot.obj in two folders) distinct names: spot.glb, spot_1.glb, ..."""
    taken: set[str] = set()
    out = []
    for item in items:
        name, n = item.output, 1
        while name.lower() in taken:
            p = PurePosixPath(item.output)
            name, n = str(p.with_name(f"{p.stem}_{n}{p.suffix}")), n + 1
        taken.add(name.lower())
        out.append(item if name == item.output else BatchItem(**{**asdict(item), "output": name}))
    return out


def _mesh_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in MESH_SUFFIXES)
    if not path.exists():
        raise MeshFileNotFoundError(f"No mesh file or folder at '{path}'; check the path.")
    return [path]


def read_jobs(
    path: str | os.PathLike,
    prompt: Optional[str] = None,
    settings: Optional[Mapping[str, Any]] = None,
    uv_set: int = 0,
) -> list[BatchItem]:
    """Items from a jobs.jsonl: one JSON object per line, {"input", "prompt", "settings", "output", "source",
    "unwrap", "uv_set"}; only "input" is needed. Relative inputs start at the file's folder; the job's prompt,
    settings and uv_set override `prompt`, `settings` and `uv_set` (the command line's). Blank lines and lines
    starting with # are ignored."""
    path = Path(path)
    if not path.is_file():
        raise MeshFileNotFoundError(f"No jobs file at '{path}'; check the path.")
    items, named = [], set()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{path.name} line {number}"
        try:
            job = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidParameterError(f"{where} is not JSON ({exc.msg}); write one JSON object per line.") from None
        if not isinstance(job, dict) or not isinstance(job.get("input"), str):
            raise InvalidParameterError(f'{where}: a job is an object with at least "input": "mesh path".')
        unknown = sorted(set(job) - set(JOB_KEYS))
        if unknown:
            raise InvalidParameterError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(JOB_KEYS)}.")
        if not isinstance(job.get("settings", {}), dict):
            raise InvalidParameterError(f'{where}: "settings" must be an object, e.g. {{"n_views": 4}}.')
        job_prompt = job.get("prompt", prompt)
        if not isinstance(job_prompt, str) or not job_prompt.strip():
            raise InvalidParameterError(f"{where}: the job has no prompt; give it one or pass --prompt.")
        if job.get("unwrap", "auto") not in UNWRAP:
            raise InvalidParameterError(f"{where}: unwrap must be one of {', '.join(UNWRAP)}.")
        job_uv_set = job.get("uv_set", uv_set)
        if not isinstance(job_uv_set, int) or isinstance(job_uv_set, bool) or job_uv_set < 0:
            raise InvalidParameterError(f"{where}: uv_set must be a UV set index, 0 (the first), 1, ...")
        mesh = (path.parent / job["input"]).resolve()
        if job.get("output"):
            output = _output_name(job["output"], where)
            if output.lower() in named:
                raise InvalidParameterError(f"{where}: another job writes '{output}'; give each its own output.")
            named.add(output.lower())
        else:
            output = _stem(job["input"]) + ".glb"
        items.append(
            BatchItem(
                input=str(mesh),
                prompt=job_prompt,
                output=output,
                settings={
                    **check_settings(settings or {}, "settings"),
                    **check_settings(job.get("settings", {}), where),
                },
                source=job.get("source"),
                unwrap=job.get("unwrap", "auto"),
                uv_set=job_uv_set,
            )
        )
    return items


def collect_items(
    inputs: Sequence[str | os.PathLike] = (),
    prompt: Optional[str] = None,
    settings: Optional[Mapping[str, Any]] = None,
    jobs: Optional[str | os.PathLike] = None,
    uv_set: int = 0,
) -> list[BatchItem]:
    """The batch's items: every mesh file in each input folder (sorted), each input file, then the jobs file's jobs.
    uv_set: the UV set of glTF / GLB inputs to texture (a job's own "uv_set" wins).

    Output names are the inputs' stems (.glb), made unique. A missing folder or jobs file, an unknown setting or
    a missing prompt is an error now, before any work; a file that does not load fails later as its own item.
    """
    settings = check_settings(settings or {}, "settings")
    items = []
    for entry in inputs:
        for mesh in _mesh_files(Path(entry)):
            if not prompt or not prompt.strip():
                raise InvalidParameterError("No prompt; pass --prompt 'what the texture shows' (or use --jobs).")
            items.append(BatchItem(str(mesh.resolve()), prompt, _stem(mesh.name) + ".glb", settings, uv_set=uv_set))
    if jobs is not None:
        items += read_jobs(jobs, prompt, settings, uv_set)
    if not items:
        raise InvalidParameterError("Nothing to do: no mesh files in the inputs; pass mesh files, folders or --jobs.")
    return _unique(items)
