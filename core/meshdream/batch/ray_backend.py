"""The batch engine on Ray: the same items, out folder, summary.json and skip rule as `run_batch`, fanned out over a
local or remote Ray cluster. Model-holding actors (one per GPU, or one per `cpus_per_worker` cores on CPU-only
clusters) load their generator once; mesh loading and UV unwrapping run as separate Ray tasks so the model workers
only texture; results are recorded as they finish. Ray is optional and imported only here, only when used."""

from __future__ import annotations

import os
import time
import uuid
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence

from ..errors import CancelledError, MeshDreamError, MeshDreamWarning
from ..progress import CancelToken
from .engine import BatchProgress, BatchReport, Recorder, error_message, is_retryable, settled_result, texture_item
from .jobs import DONE, FAILED, BatchItem, ItemResult
from .summary import CANCELLED, FINISHED, Summary

CANCEL_GRACE_S = 60.0  # how long a cancelled batch waits for running items to stop at their next step


def import_ray():
    """Ray, or a MeshDreamError naming the extra: the core does not depend on Ray."""
    try:
        import ray
    except ImportError:
        raise MeshDreamError(
            "The Ray backend needs Ray: pip install 'meshdream[ray]' (or run the batch without --ray)."
        ) from None
    return ray


@dataclass(frozen=True)
class Loaded:
    """What a geometry task reports to the scheduler (the mesh itself travels in a second object ref, so the
    driver never fetches meshes): its time, or why the mesh did not load."""

    seconds: float
    error: Optional[str] = None
    retryable: bool = False


def load_item_mesh(item: BatchItem) -> tuple[Loaded, Any]:
    """Ray task (num_returns=2): load and unwrap the item's mesh on a CPU core, away from the model workers."""
    from ..geometry import load_mesh

    if not item.loads_mesh:  # a create item makes its mesh on the model worker
        return Loaded(0.0), None
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MeshDreamWarning)
            mesh = load_mesh(item.input, unwrap=item.unwrap, uv_set=item.uv_set)
        return Loaded(time.perf_counter() - t0), mesh
    except Exception as exc:
        return Loaded(time.perf_counter() - t0, error_message(exc), is_retryable(exc)), None


@dataclass(frozen=True)
class Outcome:
    """One texturing attempt on a worker: its time, or its one-line error and whether another attempt may help."""

    seconds: float
    error: Optional[str] = None
    retryable: bool = False


class TextureWorker:
    """Ray actor holding one generator, loaded once, on the first item that needs one (an upscale-only batch
    loads none; its upscaler is kept by the engine the same way). It runs one item at a time; `cancel` runs on a
    second thread (max_concurrency=2) and makes the running item stop at its next step and every later call
    refuse."""

    def __init__(self, model: str, model_options: Mapping[str, Any]) -> None:
        self.token = CancelToken()
        self.model, self.model_options = model, dict(model_options)
        self.generator, self.broken = None, None

    def _generator(self, item: BatchItem):
        """The generator the item's kind needs (None if none); its load error is kept and raised for every item:
        the batch stops, as in-process."""
        from ..generators import load_generator
        from ..jobs import KINDS

        if self.broken is not None:
            raise self.broken
        if self.generator is None and KINDS[item.kind].model != "none":
            try:
                self.generator = load_generator(self.model, **self.model_options)
            except Exception as exc:
                self.broken = exc
                raise
        return self.generator

    def texture(self, item: BatchItem, out_dir: str, mesh: Any = None) -> Outcome:
        """Item errors become an Outcome; raises CancelledError (a cancelled item is not a failed one) and the
        model's load error (the batch stops, as in-process)."""
        generator = self._generator(item)
        t0 = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MeshDreamWarning)
                self.token.raise_if_cancelled()
                texture_item(item, generator, out_dir, cancel=self.token, mesh=mesh)
            return Outcome(time.perf_counter() - t0)
        except CancelledError:
            raise
        except Exception as exc:
            return Outcome(time.perf_counter() - t0, error_message(exc), is_retryable(exc))

    def cancel(self) -> None:
        self.token.cancel()


@dataclass
class _Job:
    item: BatchItem
    attempts: int = 0
    seconds: float = 0.0
    mesh: Any = None  # object ref of the loaded mesh; None: the worker loads it (no core left for geometry tasks)
    tried: set[int] = field(default_factory=set)  # workers an attempt failed on; a retry prefers another


@dataclass
class _Worker:
    serial: int
    actor: Any


def plan_workers(
    resources: Mapping[str, float], workers: Optional[int], gpus_per_worker: float, cpus_per_worker: float
) -> tuple[int, dict, bool]:
    """(worker count, actor resource options, whether geometry runs as separate tasks) for a cluster's resources.

    One worker per `gpus_per_worker` GPUs when the cluster has GPUs, else one per `cpus_per_worker` cores with one
    core kept for geometry tasks. Geometry gets separate tasks only when the workers leave a whole core free;
    otherwise each worker loads its own meshes (nothing could ever schedule the tasks)."""
    gpus, cpus = resources.get("GPU", 0.0), resources.get("CPU", 0.0)
    use_gpu = gpus_per_worker > 0 and gpus >= gpus_per_worker
    if workers is None:
        workers = int(gpus // gpus_per_worker) if use_gpu else int((cpus - 1) // cpus_per_worker)
    workers = max(1, workers)
    options = {"num_cpus": cpus_per_worker, **({"num_gpus": gpus_per_worker} if use_gpu else {})}
    return workers, options, cpus - workers * cpus_per_worker >= 1


def _connect(ray, address: str) -> bool:
    """Join (or start) the cluster; True when this call started Ray and so must shut it down."""
    if ray.is_initialized():
        return False
    if address == "local":
        ray.init(include_dashboard=False)
    else:
        ray.init(address=address)  # "auto": the cluster this machine belongs to; else "HOST:PORT" or "ray://..."
    return True


def run_batch_ray(
    items: Sequence[BatchItem],
    out_dir: str | os.PathLike,
    *,
    address: str = "local",
    model: str = "builtin",
    model_options: Optional[Mapping[str, Any]] = None,
    workers: Optional[int] = None,
    gpus_per_worker: float = 1.0,
    cpus_per_worker: float = 1.0,
    retries: int = 0,
    overwrite: bool = False,
    progress: Optional[Callable[[BatchProgress], None]] = None,
    cancel: Optional[CancelToken] = None,
) -> BatchReport:
    """`run_batch` on a Ray cluster: same arguments and results, plus where and how wide to run.

    address: "local" starts Ray on this machine, "auto" joins the cluster this machine is part of, anything else
    is a cluster address; an already initialised Ray is used as it is. `out_dir` and the inputs must be paths
    every node can read and write (a shared filesystem). A retryable failure, or a worker that dies (it is
    replaced), counts as an attempt; the item is retried up to `retries` times, on another worker when there is
    one. `cancel` or Ctrl-C stops the running items at their next step; finished items stay in summary.json.
    """
    finish = Recorder(Summary(out_dir), len(items), progress)
    summary, report = finish.summary, finish.report
    summary.recover(items)  # as run_batch: a killed run's placed outputs recorded, its temporaries removed
    todo = []
    for item in items:
        settled = settled_result(summary, item, overwrite)
        if settled is None:
            todo.append(_Job(item))
        else:
            finish(item, settled)
    if todo and not (cancel is not None and cancel.cancelled):
        ray = import_ray()
        started = _connect(ray, address)
        try:
            scheduler = _Scheduler(ray, summary, finish, cancel, retries)
            count, options, geometry = plan_workers(ray.cluster_resources(), workers, gpus_per_worker, cpus_per_worker)
            report.cancelled = scheduler.run(todo, min(count, len(todo)), options, geometry, model, model_options)
            summary.state = CANCELLED if report.cancelled else FINISHED
        except KeyboardInterrupt:
            report.cancelled, summary.state = True, CANCELLED
            raise
        finally:  # any other error leaves the state "running": the batch neither finished nor was cancelled
            if started:
                ray.shutdown()
            summary.write()
    else:
        report.cancelled = bool(todo)
        summary.state = CANCELLED if report.cancelled else FINISHED
        summary.write()
    return report


class _Scheduler:
    """The driver's loop: geometry tasks a little ahead of the workers, one item per worker at a time, results
    recorded as they arrive (ray.wait), retries and dead workers handled, and a clean stop on cancel."""

    def __init__(self, ray, summary: Summary, finish, cancel: Optional[CancelToken], retries: int) -> None:
        self.ray, self.summary, self.finish, self.cancel, self.retries = ray, summary, finish, cancel, retries
        self.loading: dict[Any, _Job] = {}  # info ref of a geometry task -> its job
        self.ready: list[_Job] = []  # loaded (or to be loaded by the worker), waiting for a worker
        self.running: dict[Any, tuple[_Worker, _Job]] = {}
        self.idle: list[_Worker] = []
        self.name = f"meshdream-batch-{uuid.uuid4().hex[:8]}"
        self.serial = 0

    def _start_worker(self) -> None:
        self.serial += 1
        actor = self.worker_class.options(name=f"{self.name}-{self.serial}").remote(self.model, self.model_options)
        self.idle.append(_Worker(self.serial, actor))

    def _load(self, job: _Job) -> None:
        info, job.mesh = self.loader.remote(job.item)
        self.loading[info] = job

    def run(self, todo: list[_Job], count: int, options: dict, geometry: bool, model: str, model_options) -> bool:
        """Texture every job; True when cancelled."""
        ray = self.ray
        self.model, self.model_options = model, dict(model_options or {})
        self.worker_class = ray.remote(max_concurrency=2, max_restarts=0, **options)(TextureWorker)
        self.loader = ray.remote(num_cpus=1, num_returns=2)(load_item_mesh)
        waiting = list(todo)
        for _ in range(count):
            self._start_worker()
        try:
            while waiting or self.loading or self.ready or self.running:
                if self.cancel is not None and self.cancel.cancelled:
                    self._stop()
                    return True
                while waiting and len(self.loading) + len(self.ready) < 2 * count:  # a little ahead, not all
                    job = waiting.pop(0)
                    if geometry:
                        self._load(job)
                    else:
                        self.ready.append(job)
                self._dispatch()
                done, _ = ray.wait([*self.loading, *self.running], num_returns=1, timeout=0.5)
                for ref in done:
                    if ref in self.loading:
                        self._loaded(ref, self.loading.pop(ref))
                    else:
                        self._textured(ref, *self.running.pop(ref))
            return False
        except KeyboardInterrupt:
            self._stop()
            raise
        finally:
            for worker in [*self.idle, *(w for w, _ in self.running.values())]:
                ray.kill(worker.actor)  # frees its GPU for the cluster's next user

    def _dispatch(self) -> None:
        """Give ready jobs to idle workers; a retried job waits for a worker it has not failed on, if one lives."""
        live = {w.serial for w in self.idle} | {w.serial for w, _ in self.running.values()}
        for job in list(self.ready):
            if not self.idle:
                return
            fresh = [w for w in self.idle if w.serial not in job.tried]
            if not fresh and not live <= job.tried:
                continue
            worker = (fresh or self.idle)[0]
            self.idle.remove(worker)
            self.ready.remove(job)
            ref = worker.actor.texture.remote(job.item, str(self.summary.out_dir), job.mesh)
            self.running[ref] = (worker, job)

    def _loaded(self, ref, job: _Job) -> None:
        info: Loaded = self.ray.get(ref)
        job.seconds += info.seconds
        if info.error is None:
            self.ready.append(job)
            return
        job.attempts += 1
        if job.attempts <= self.retries and info.retryable:
            self._load(job)
        else:
            self._record(job, info.error)

    def _textured(self, ref, worker: _Worker, job: _Job) -> None:
        ray = self.ray
        job.attempts += 1
        try:
            outcome: Outcome = ray.get(ref)
        except ray.exceptions.RayActorError as exc:  # the worker died (killed, out of memory, node lost)
            self._start_worker()
            outcome = Outcome(0.0, f"worker died: {str(exc).strip().splitlines()[0]}", retryable=True)
        except ray.exceptions.RayTaskError as exc:
            self.idle.append(worker)  # alive: the run's end kills it with the others
            if isinstance(exc.cause, CancelledError):
                return
            raise exc.cause from None  # the worker itself is unusable (e.g. its model did not load): stop
        else:
            self.idle.append(worker)
        job.seconds += outcome.seconds
        if outcome.error is None:
            self._record(job)
        elif job.attempts <= self.retries and outcome.retryable:
            job.tried.add(worker.serial)
            self.ready.append(job)
        else:
            self._record(job, outcome.error)

    def _record(self, job: _Job, error: Optional[str] = None) -> None:
        item = job.item
        out, status = str(self.summary.output_path(item)), DONE if error is None else FAILED
        result = ItemResult(item.source or item.input, out, status, round(job.seconds, 3), job.attempts, error)
        self.finish(item, result)

    def _stop(self) -> None:
        """Cancel: drop queued work, ask running items to stop at their next step, record those that finished
        first; the run's finally kills the workers (a worker stuck past the grace time is killed mid-item, which
        leaves at most a hidden .partial- folder, never a half-written output)."""
        ray = self.ray
        for ref in self.loading:
            ray.cancel(ref)
        self.loading.clear()
        self.ready.clear()
        for worker, _ in self.running.values():
            worker.actor.cancel.remote()
        deadline = time.monotonic() + CANCEL_GRACE_S
        while self.running and time.monotonic() < deadline:
            done, _ = ray.wait(list(self.running), num_returns=1, timeout=max(0.0, deadline - time.monotonic()))
            for ref in done:
                worker, job = self.running.pop(ref)
                self.idle.append(worker)
                try:
                    outcome: Outcome = ray.get(ref)
                except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError):
                    continue  # cancelled or lost: not recorded, a re-run does it
                job.attempts += 1
                job.seconds += outcome.seconds
                if outcome.error is None:
                    self._record(job)
