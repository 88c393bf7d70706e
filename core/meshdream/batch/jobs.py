"""What a batch is made of: items (one mesh, its kind of job, prompt, settings, output name) and their results,
read from files, folders or a jobs.jsonl. Light imports only: the command line builds items before any model is
loaded."""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Mapping, Optional, Sequence

from ..errors import InvalidParameterError, MeshFileNotFoundError
from ..jobs import job_kind

DONE, FAILED, SKIPPED = "done", "failed", "skipped"
STATUSES = (DONE, FAILED, SKIPPED)
MESH_SUFFIXES = (".obj", ".glb", ".gltf", ".ply", ".stl", ".off")  # what load_mesh reads
# texture: texture_mesh; restyle: restyle_texture and upscale: upscale_texture, on the texture a mesh already has;
# create: create_asset, a new textured mesh from its prompt alone (no input mesh). Each is its kind in
# meshdream.jobs.KINDS, whose settings (the core function's keywords) an item may set.
KINDS = ("texture", "restyle", "upscale", "create")
# What each kind writes: a textured mesh (save_textured), or the upscaled texture alone. The first is the default.
MESH_OUT = (".glb", ".obj")
OUTPUT_SUFFIXES = {"texture": MESH_OUT, "restyle": MESH_OUT, "upscale": (".png",), "create": MESH_OUT}
UNWRAP = ("auto", "always", "never")
JOB_KEYS = ("input", "prompt", "settings", "output", "source", "unwrap", "uv_set", "kind", "texture")


@dataclass(frozen=True)
class BatchItem:
    """One job: texture `input` from `prompt` with texture_mesh `settings`, written to `output` in the out folder;
    or, by `kind`, restyle its `texture` toward `prompt` (restyle_texture) or upscale it (upscale_texture; the
    prompt only guides a diffusion upscaler).

    source: what summary.json calls the input (e.g. "scene.blend:Suzanne" for a mesh Blender exported to a
    temporary file); None means the input path itself. unwrap: load_mesh's option ("never" keeps a DCC UV map;
    restyle and upscale always keep the UVs their texture is painted on). uv_set: load_mesh's too, the UV set
    (TEXCOORD_n) of a glTF / GLB input to texture. A create item has no input ("") and makes its mesh from `prompt`.
    """

    input: str
    prompt: str
    output: str  # relative to the out folder; .glb or .obj
    settings: Mapping[str, Any] = field(default_factory=dict)
    source: Optional[str] = None
    unwrap: str = "auto"
    uv_set: int = 0
    kind: str = "texture"
    texture: Optional[str] = None  # restyle, upscale: the mesh's texture image (absolute path)

    @property
    def name(self) -> str:
        """Short label for progress lines."""
        return self.source or Path(self.input).name

    @property
    def loads_mesh(self) -> bool:
        """Whether the item works on an input mesh (every kind but create, which makes its own)."""
        return "mesh" in job_kind(self.kind).inputs

    @property
    def pbr(self) -> bool:
        """Whether the item makes PBR maps (settings.pbr, texture and restyle items)."""
        return bool(self.settings.get("pbr"))

    @property
    def inputs(self) -> tuple[str, ...]:
        """The files the item reads, which no output may replace."""
        return tuple(p for p in (self.input, self.texture) if p)


@dataclass
class ItemResult:
    """One line of summary.json; `input` and `output` are absolute paths (the input's `source` when it has one)."""

    input: str
    output: str
    status: str  # done, failed or skipped (done by an earlier run)
    seconds: float = 0.0
    attempts: int = 0
    error: Optional[str] = None
    maps: Optional[dict[str, str]] = None  # pbr items: PNG per map beside the output, {"roughness": path, ...}

    def to_dict(self) -> dict:
        out = asdict(self)
        if self.maps is None:
            del out["maps"]  # the summary of an item without maps is as it was
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ItemResult":
        keys = ("input", "output", "status", "seconds", "attempts", "error", "maps")
        return cls(**{k: data.get(k) for k in keys})


def map_files(output: Path) -> dict[str, Path]:
    """Where a pbr item's maps lie beside its output: <stem>.png (base colour), <stem>_roughness.png,
    <stem>_metallic.png, <stem>_normal.png; the batch writes them beside a .glb, save_textured beside an .obj."""
    from ..generators.material_models import MAP_NAMES

    return {
        name: output.with_name(output.stem + ("" if name == "base_color" else "_" + name) + ".png")
        for name in MAP_NAMES
    }


def check_settings(settings: Mapping[str, Any], where: str, kind: str = "texture") -> dict:
    """The item's settings, checked against its kind's core function before hours of work (a typo is an error)."""
    return job_kind(kind).check_settings(settings, where)


def _output_name(name: str, where: str, kind: str) -> str:
    """A relative path inside the out folder (no absolute paths, no '..') with a suffix the kind writes."""
    suffixes = OUTPUT_SUFFIXES[kind]
    path = PurePosixPath(name.replace("\\", "/"))
    if not path.suffix:
        path = path.with_suffix(suffixes[0])
    if path.is_absolute() or ".." in path.parts or path.suffix.lower() not in suffixes:
        raise InvalidParameterError(
            f"{where}: output {name!r} must be a {' or '.join(suffixes)} name inside the out folder "
            "(no absolute path, no '..')."
        )
    return str(path)


def _default_output(kind: str, mesh: str, texture: Optional[str], settings: Mapping[str, Any]) -> str:
    """The input's stem with what was done to it: spot.glb, spot_restyled.glb, spot_texture_x2.png."""
    if kind == "texture":
        return _stem(mesh) + ".glb"
    if kind == "create":
        return _stem(mesh) + ".glb"  # the prompt's words
    if kind == "restyle":
        return _stem(mesh) + "_restyled.glb"
    return _stem(texture) + (f"_x{settings['scale']}" if "scale" in settings else "_upscaled") + ".png"


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
    "unwrap", "uv_set", "kind", "texture"}; only "input" is needed ("texture" too for kind "restyle" / "upscale");
    kind "create" takes a "prompt" and no input (its output is named after the prompt unless given).
    Relative paths start at the file's folder; the job's prompt, settings and uv_set override `prompt`, `settings`
    and `uv_set` (the command line's, whose settings a job gets where its kind takes them). Blank lines and lines
    starting with # are ignored."""
    path = Path(path)
    if not path.is_file():
        raise MeshFileNotFoundError(f"No jobs file at '{path}'; check the path.")
    settings = check_settings(settings or {}, "settings")
    items, named = [], set()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{path.name} line {number}"
        try:
            job = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidParameterError(f"{where} is not JSON ({exc.msg}); write one JSON object per line.") from None
        if isinstance(job, dict) and job.get("kind") == "create":
            _check_create(job, where)
        elif not isinstance(job, dict) or not isinstance(job.get("input"), str):
            raise InvalidParameterError(f'{where}: a job is an object with at least "input": "mesh path".')
        unknown = sorted(set(job) - set(JOB_KEYS))
        if unknown:
            raise InvalidParameterError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(JOB_KEYS)}.")
        if not isinstance(job.get("settings", {}), dict):
            raise InvalidParameterError(f'{where}: "settings" must be an object, e.g. {{"n_views": 4}}.')
        kind, texture = _kind(job, where, path.parent)
        job_prompt = job.get("prompt", prompt)
        if kind == "upscale" and job_prompt is None:
            job_prompt = ""  # only a diffusion upscaler reads it
        elif not isinstance(job_prompt, str) or not job_prompt.strip():
            raise InvalidParameterError(f"{where}: the job has no prompt; give it one or pass --prompt.")
        unwrap = job.get("unwrap", "never" if kind in ("restyle", "upscale") else "auto")
        if unwrap not in UNWRAP:
            raise InvalidParameterError(f"{where}: unwrap must be one of {', '.join(UNWRAP)}.")
        if kind in ("restyle", "upscale") and unwrap != "never":
            raise InvalidParameterError(
                f'{where}: a {kind} job keeps the mesh\'s own UVs (its texture is painted on them); leave "unwrap" out.'
            )
        job_uv_set = job.get("uv_set", uv_set)
        if not isinstance(job_uv_set, int) or isinstance(job_uv_set, bool) or job_uv_set < 0:
            raise InvalidParameterError(f"{where}: uv_set must be a UV set index, 0 (the first), 1, ...")
        mesh = str((path.parent / job["input"]).resolve()) if "input" in job else ""
        job_settings = {
            **{k: v for k, v in settings.items() if k in job_kind(kind).settings},
            **check_settings(job.get("settings", {}), where, kind),
        }
        if job.get("output"):
            output = _output_name(job["output"], where, kind)
            if output.lower() in named:
                raise InvalidParameterError(f"{where}: another job writes '{output}'; give each its own output.")
            named.add(output.lower())
        else:
            output = _default_output(kind, job.get("input", job_prompt), texture, job_settings)
        items.append(
            BatchItem(
                input=mesh,
                prompt=job_prompt,
                output=output,
                settings=job_settings,
                source=job.get("source", f"create: {job_prompt}" if kind == "create" else None),
                unwrap=unwrap,
                uv_set=job_uv_set,
                kind=kind,
                texture=texture,
            )
        )
    return items


def _check_create(job: Mapping[str, Any], where: str) -> None:
    """A create job makes its mesh from its prompt: it names no input mesh nor anything about one."""
    given = sorted(set(job) & {"input", "texture", "unwrap", "uv_set"})
    if given:
        raise InvalidParameterError(
            f"{where}: a create job makes its mesh from its prompt; leave out {', '.join(map(repr, given))}."
        )


def _kind(job: Mapping[str, Any], where: str, folder: Path) -> tuple[str, Optional[str]]:
    """The job's kind and, for restyle / upscale, the absolute path of the texture it works on."""
    kind = job_kind(job.get("kind", "texture"), KINDS, f"{where}: kind").name
    if kind in ("texture", "create"):
        if "texture" in job:
            raise InvalidParameterError(f'{where}: "texture" is the input of restyle and upscale jobs; set "kind".')
        return kind, None
    if not isinstance(job.get("texture"), str):
        raise InvalidParameterError(f'{where}: a {kind} job needs "texture": the path of the mesh\'s texture image.')
    return kind, str((folder / job["texture"]).resolve())


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
