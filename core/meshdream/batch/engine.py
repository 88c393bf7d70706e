"""The batch engine: `texture_item` turns one item (any kind) into files (pure work, no scheduling), `run_item`
adds attempts and error capture, and `run_batch` is the in-process scheduler: one generator, items in order,
summary.json after each. A distributed scheduler (Ray) reuses the first two and `Summary`, and only replaces the
loop."""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from ..errors import CancelledError, MeshDreamError, MeshDreamWarning, OutputExistsError
from ..files import TEMP_PREFIX
from ..jobs import CREATE_RESULT, KINDS, TEXTURE
from ..progress import CancelToken, Progress
from .jobs import DONE, FAILED, SKIPPED, BatchItem, ItemResult, map_files
from .summary import CANCELLED, FINISHED, Placed, Summary, marker_path


@dataclass(frozen=True)
class BatchProgress:
    """Where the batch is: `done` of `total` items finished; the current item and its stage (`step`), or the
    result it just got (`result`, once per item)."""

    done: int
    total: int
    item: BatchItem
    step: Optional[Progress] = None
    result: Optional[ItemResult] = None


@dataclass
class BatchReport:
    """This run's results (summary.json also keeps earlier runs' other items) and whether Ctrl-C/cancel cut it."""

    results: list[ItemResult] = field(default_factory=list)
    cancelled: bool = False
    summary_path: Optional[Path] = None

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def failed(self) -> int:
        return self.count(FAILED)


@functools.lru_cache(maxsize=1)
def _upscaler(spec: str, scale: int, device: str):
    """The batch's upscaler, loaded once per process (a Ray worker's too, on its first upscale item)."""
    from ..generators.upscalers import load_upscaler

    return load_upscaler(spec, scale, device)


@functools.lru_cache(maxsize=1)
def _material_model(spec: str, device: str):
    """The batch's material model (settings.material_model), loaded once per process like the upscaler."""
    from ..generators.material_models import load_material_model

    return load_material_model(spec, device=device)


def _make(item: BatchItem, generator, mesh, progress, cancel):
    """The item's core call, by its kind in meshdream.jobs.KINDS: (the mesh, what save_textured takes or None for
    a texture alone, the texture); a create item's mesh is the one it made."""
    from ..images import read_image

    kind = KINDS[item.kind]
    args = {"progress": progress, "cancel": cancel, **kind.fixed}
    if "mesh" in kind.inputs:
        args["mesh"] = mesh
    if "texture" in kind.inputs:
        args["texture"] = read_image(item.texture, what="texture image")
    if "prompt" in kind.inputs or "prompt" in kind.settings:  # upscale: only a diffusion upscaler reads it
        args["prompt"] = item.prompt
    if kind.model != "none":
        args["generator"] = generator
    args = {**args, **item.settings}
    if "upscaler" in kind.settings:
        scale = args.get("scale", kind.default("scale"))
        device = "auto" if generator is None else str(generator.device)
        args["upscaler"] = _upscaler(args.get("upscaler", kind.default("upscaler")), scale, device)
    if isinstance(args.get("material_model"), str):
        args["material_model"] = _material_model(args["material_model"], str(getattr(generator, "device", "auto")))
    out = kind.call(**args)
    if kind.returns == TEXTURE:
        return mesh, None, out
    if kind.returns == CREATE_RESULT:
        mesh, out = out.mesh, out.texture
    return mesh, out, out.texture  # save_textured takes its pages (materials, UDIM tiles) and PBR maps, if any


def texture_item(item: BatchItem, generator, out_dir: Path, progress=None, cancel=None, mesh=None) -> Path:
    """Run one item (texture, restyle or upscale) and write its output (+ the texture PNG beside a .glb); returns
    the output path. generator: the loaded model (unused by upscale items).

    mesh: the item's input already loaded (a scheduler that loads and unwraps on other cores passes it in).

    Files are written in a temporary folder inside `out_dir` and moved into place, the output last, so an output
    that exists is complete; a `Placed` marker written before the move lets the next run recognise the output if
    this process dies before summary.json records it. Raises on failure (CancelledError when cancelled); nothing
    partial is left (a killed run leaves .partial-* temporaries, which the next run removes).
    """
    from ..geometry import load_mesh, save_textured
    from ..images import save_png

    t0 = time.perf_counter()
    out = Path(out_dir) / item.output
    if mesh is None and item.loads_mesh:
        mesh = load_mesh(item.input, unwrap=item.unwrap, uv_set=item.uv_set, progress=progress, cancel=cancel)
    mesh, textured, texture = _make(item, generator, mesh, progress, cancel)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=out.parent))
    try:
        if textured is None:
            save_png(texture, tmp / out.name)
        else:
            save_textured(mesh, textured, tmp / out.name)
            if out.suffix.lower() == ".glb":  # the images beside it too, for tools that take textures apart
                save_png(texture, tmp / (out.stem + ".png"))
                for name, path in map_files(tmp / out.name).items():
                    if name in textured.maps and name != "base_color":
                        save_png(textured.maps[name], path)
        source = item.source or item.input
        Placed(item.output, source, round(time.perf_counter() - t0, 3), Placed.digest(tmp / out.name)).write(out)
        try:
            # .png and .mtl first: once the output itself appears, everything it refers to is there.
            for written in sorted(tmp.iterdir(), key=lambda p: p.name == out.name):
                os.replace(written, out.parent / written.name)
        except BaseException:
            marker_path(out).unlink(missing_ok=True)  # the output was not moved: the marker vouches for nothing
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def is_retryable(exc: BaseException) -> bool:
    """MeshDream's own errors are about the input or the settings and fail the same way again; anything else
    (device out of memory, a crashed library) may not."""
    return not isinstance(exc, MeshDreamError)


def error_message(exc: BaseException) -> str:
    """One line for summary.json: MeshDream's own message, or the exception's type and first line."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return text if isinstance(exc, MeshDreamError) else f"{type(exc).__name__}: {text} (internal error)"


def run_item(
    item: BatchItem,
    generator,
    out_dir: Path,
    retries: int = 0,
    progress: Optional[Callable[[Progress], None]] = None,
    cancel: Optional[CancelToken] = None,
) -> ItemResult:
    """`texture_item` with up to `retries` more attempts for retryable errors; every failure becomes a result.
    CancelledError (and KeyboardInterrupt) propagate: a cancelled item is not a failed one."""
    out = Path(out_dir) / item.output
    source = item.source or item.input
    t0 = time.perf_counter()
    attempts = 0
    while True:
        attempts += 1
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MeshDreamWarning)  # repairs the core made; the result is usable
                texture_item(item, generator, out_dir, progress, cancel)
            return ItemResult(source, str(out), DONE, round(time.perf_counter() - t0, 3), attempts)
        except CancelledError:
            raise
        except Exception as exc:
            if attempts <= retries and is_retryable(exc):
                continue
            return ItemResult(
                source, str(out), FAILED, round(time.perf_counter() - t0, 3), attempts, error_message(exc)
            )


def settled_result(summary: Summary, item: BatchItem, overwrite: bool) -> Optional[ItemResult]:
    """The item's result without any work, or None if it must run: skipped when an earlier run finished it,
    failed when its output exists but no batch made it, or would replace one of its inputs (whatever `overwrite`
    says). Every scheduler applies the same rule."""
    out = summary.output_path(item)
    beside = {out, out.with_suffix(".png"), out.with_suffix(".mtl")}  # what save_textured may write with it
    beside |= set(map_files(out).values()) if item.pbr else set()
    clash = next((p for p in item.inputs if Path(p).resolve() in {b.resolve() for b in beside}), None)
    if clash is not None:
        message = str(
            OutputExistsError(f"Output '{out}' would replace the input '{clash}'; name the output otherwise.")
        )
        return ItemResult(item.source or item.input, str(out), FAILED, attempts=0, error=message)
    if not overwrite and summary.is_finished(item):
        return ItemResult(item.source or item.input, str(out), SKIPPED)
    if out.exists() and not overwrite and summary.previous(item) is None:
        message = str(OutputExistsError(f"'{out}' exists but no earlier batch made it; pass --overwrite."))
        return ItemResult(item.source or item.input, str(out), FAILED, attempts=0, error=message)
    return None


class Recorder:
    """Records a finished item in summary.json and the report, and reports it: the one way both schedulers
    (`run_batch`, `run_batch_ray`) finish an item."""

    def __init__(self, summary: Summary, total: int, progress: Optional[Callable[[BatchProgress], None]]) -> None:
        self.summary, self.total, self.progress = summary, total, progress
        self.report = BatchReport(summary_path=summary.path)

    def __call__(self, item: BatchItem, result: ItemResult) -> None:
        if item.pbr and result.status != FAILED:  # summary.json names the maps written beside the output
            files = map_files(Path(result.output))
            result.maps = {name: str(path) for name, path in files.items() if path.exists()}
        self.report.results.append(result)
        self.summary.record(result)
        if self.progress is not None:
            self.progress(BatchProgress(len(self.report.results), self.total, item, result=result))


def run_batch(
    items: Sequence[BatchItem],
    out_dir: str | os.PathLike,
    *,
    generator=None,
    model: str = "builtin",
    model_options: Optional[Mapping[str, Any]] = None,
    retries: int = 0,
    overwrite: bool = False,
    progress: Optional[Callable[[BatchProgress], None]] = None,
    cancel: Optional[CancelToken] = None,
) -> BatchReport:
    """Run `items` (see collect_items) one after another into `out_dir`, with one generator for all.

    generator: an already loaded one; else `load_generator(model, **model_options)`, loaded when the first item
    needs it (a re-run with everything done loads nothing). Items that summary.json records as done and whose
    output exists are skipped unless `overwrite`; an existing output of unknown origin fails its item instead of
    being replaced. A failing item is recorded with its error and the batch goes on. `cancel` (or Ctrl-C) stops
    the running item at its next step; it is left out of the summary and `report.cancelled` is set.
    """
    finish = Recorder(Summary(out_dir), len(items), progress)
    summary, report, total = finish.summary, finish.report, finish.total
    summary.recover(items)  # what a killed run left: outputs it placed are recorded, its temporaries removed
    for item in items:
        settled = settled_result(summary, item, overwrite)
        if settled is not None:
            finish(item, settled)
            continue
        if cancel is not None and cancel.cancelled:
            report.cancelled = True
            break
        if generator is None and KINDS[item.kind].model != "none":  # e.g. an upscale-only batch loads none
            from ..generators import load_generator

            generator = load_generator(model, **dict(model_options or {}))

        def step(p: Progress, item=item) -> None:
            if progress is not None:
                progress(BatchProgress(len(report.results), total, item, step=p))

        try:
            result = run_item(item, generator, summary.out_dir, retries, step, cancel)
        except CancelledError:
            report.cancelled = True
            break
        finish(item, result)
    summary.state = CANCELLED if report.cancelled else FINISHED
    summary.write()
    return report
