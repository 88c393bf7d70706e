"""The job queue and its one worker thread: jobs run in submission order on one device, models stay loaded.

The worker calls the core exactly as a user's script does: load_mesh, load_generator, then the job's kind's
function from meshdream.jobs.KINDS; a job that raises is marked failed with its message and the worker takes
the next one.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
import uuid
import warnings
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Awaitable, Optional

import torch
import trimesh

from ..errors import CancelledError, MeshDreamError, MeshDreamWarning
from ..generators import load_generator
from ..generators.material_models import load_material_model
from ..generators.upscalers import Upscaler, load_upscaler
from ..geometry import load_mesh, mesh_info
from ..jobs import CREATE_RESULT, KINDS, TEXTURE, TEXTURE_RESULT
from ..progress import Progress
from ..shapes import points_to_mesh
from ..shapes.sampler import load_shape_model
from ..tensors import pick_device
from ..texturing.pipeline import resolve_view_resolution
from .jobs import CANCELLED, DONE, FAILED, FINISHED, QUEUED, RUNNING, Job, JobResult, MeshInput, ModelSpec, Request

log = logging.getLogger("meshdream.server")
GONE_KEPT = 10_000  # why a forgotten job is gone, for its 404: the newest reasons are kept
PREVIEW_EVERY_S = 0.5  # a running job's preview is refreshed at most this often (each costs a device sync)


class ModelCache:
    """Texture generators and upscalers by spec, loaded on first use and kept between jobs; `unload` frees them
    all."""

    def __init__(self, device: str = "auto") -> None:
        self.device = device
        self._models: dict[str, object] = {}

    @property
    def device_name(self) -> str:
        return str(pick_device(self.device))

    def get(self, spec: ModelSpec):
        if spec.key not in self._models:
            log.info("loading model %s", spec.key)
            self._models[spec.key] = load_generator(spec.spec, **{"device": self.device, **dict(spec.options)})
        return self._models[spec.key]

    def upscaler(self, spec: str, scale: int) -> Upscaler:
        """An upscaler by spec and scale, loaded on this cache's device on first use and kept like a generator."""
        key = f"upscaler {spec} x{scale}"
        if key not in self._models:
            log.info("loading %s", key)
            self._models[key] = load_upscaler(spec, scale, self.device)
        return self._models[key]

    def material_model(self, spec: str):
        """A material model (settings.material_model) by spec, loaded on first use and kept like a generator."""
        key = f"material model {spec}"
        if key not in self._models:
            log.info("loading %s", key)
            self._models[key] = load_material_model(spec, device=self.device)
        return self._models[key]

    def loaded(self) -> list[str]:
        return list(self._models) + (["shape model"] if load_shape_model.cache_info().currsize else [])

    def unload(self) -> None:
        """Drop every model (the shape model's cache too) and hand the accelerator's memory back."""
        self._models.clear()
        load_shape_model.cache_clear()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


class ServerFullError(MeshDreamError):
    """Results not fetched yet fill the server's result budget: a new job is refused rather than one lost."""


@dataclass(frozen=True)
class Retention:
    """How long finished jobs stay, and how much memory their results may hold.

    A finished job stays `keep_s` seconds (fetched or not: a client may fetch again). Past `keep_bytes`, results
    already fetched go first, oldest fetch first; results nobody fetched are never evicted for another job: new
    jobs are refused (503) until they are fetched or expire. Jobs accepted before that may still finish and take
    the total past the budget by their own results."""

    keep_s: float = 3600.0
    keep_bytes: int = 2048 * 2**20


class Worker:
    """Owns the queue; `lock` (a Condition) guards every Job field and is notified on each change."""

    def __init__(self, models: ModelCache, idle_unload: float = 0.0, retention: Retention = Retention()) -> None:
        self.models = models
        self.idle_unload = idle_unload  # seconds without work before models are unloaded; 0 = never
        self.retention = retention
        self.lock = threading.Condition()
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._gone: OrderedDict[str, str] = OrderedDict()  # forgotten job id -> why, for its 404
        self._queue: deque[Job] = deque()
        self._stopping = False
        self._last_work = time.monotonic()
        # Long polls waiting on the event loop, by job id: touched on the loop only (the worker thread reads it).
        self._waiters: dict[str, set[asyncio.Future]] = {}
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread = threading.Thread(target=self._work, name="meshdream-worker", daemon=True)

    # --- used by the HTTP handlers (any thread) ------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    @property
    def stopping(self) -> bool:
        return self._stopping

    def submit(self, kind: str, request: Request) -> Job:
        """Queue a job; ServerFullError when unfetched results fill the budget (nothing is evicted for it)."""
        job = Job(uuid.uuid4().hex, kind, request)
        with self.lock:
            self._forget_old()
            held, budget = self._held(), self.retention.keep_bytes
            if held >= budget:
                raise ServerFullError(
                    f"The server holds {held / 2**20:.1f} MB of results no client has fetched yet, its limit "
                    f"(serve --keep-results-mb {budget / 2**20:g}); fetch them (GET /v1/jobs/ID/result) or wait until "
                    f"they expire ({self.retention.keep_s:g} s after they finished, --keep-results-s), then submit "
                    "again."
                )
            self._jobs[job.id] = job
            self._queue.append(job)
            self.lock.notify_all()
        return job

    def job(self, job_id: str) -> Optional[Job]:
        with self.lock:
            self._forget_old()
            return self._jobs.get(job_id)

    def gone(self, job_id: str) -> Optional[str]:
        """Why a job this server had is gone (expired, evicted), or None if it never had it."""
        with self.lock:
            return self._gone.get(job_id)

    def fetched(self, job: Job) -> None:
        """The job's result went to a client: from now on it is the first to go when memory is needed."""
        with self.lock:
            if job.fetched is None:
                job.fetched = time.time()

    def queue_position(self, job: Job) -> Optional[int]:
        """0 = runs next; None once it started."""
        with self.lock:
            return self._queue.index(job) if job.state == QUEUED else None

    def queue_length(self) -> int:
        with self.lock:
            return len(self._queue)

    def running(self) -> Optional[str]:
        with self.lock:
            return next((j.id for j in self._jobs.values() if j.state == RUNNING), None)

    async def wait_for_change(self, job: Job, after: int, timeout: float, gone: Awaitable) -> None:
        """Wait, on the event loop and holding no thread, until the job changed past version `after`, finished,
        `timeout` seconds passed, or `gone` (the client's disconnect) completed: a long poll costs a future, not
        a request thread, and one whose client left ends at once.

        Must run on the loop given to `serve_loop`; the worker thread wakes it with call_soon_threadsafe."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        gone = asyncio.ensure_future(gone)
        try:
            while True:
                news = loop.create_future()
                self._waiters.setdefault(job.id, set()).add(news)  # registered before the check: no lost wake-up
                with self.lock:
                    if job.version > after or job.state in FINISHED:
                        return
                left = deadline - loop.time()
                if left <= 0:
                    return
                await asyncio.wait((news, gone), timeout=left, return_when=asyncio.FIRST_COMPLETED)
                self._waiters.get(job.id, set()).discard(news)
                if gone.done():
                    return
        finally:
            gone.cancel()
            waiting = self._waiters.get(job.id)
            if waiting is not None:
                waiting.discard(news)
                if not waiting:
                    del self._waiters[job.id]

    def polls(self) -> int:
        """Long polls waiting now (read on the loop)."""
        return sum(len(w) for w in self._waiters.values())

    def serve_loop(self, loop: Optional[asyncio.AbstractEventLoop]) -> None:
        """The event loop whose long polls `_changed` wakes (None: no loop, nobody to wake)."""
        self._loop = loop

    def _wake(self, job_id: str) -> None:
        """On the loop: resolve every poll waiting on the job (each re-checks it)."""
        for news in self._waiters.pop(job_id, ()):
            if not news.done():
                news.set_result(None)

    def cancel(self, job: Job) -> None:
        """A queued job is dropped at once; a running one stops at its next step (the core's CancelToken)."""
        with self.lock:
            if job.state == QUEUED:
                self._queue.remove(job)
                self._finish(job, CANCELLED, "Cancelled before it started.")
            elif job.state == RUNNING and not job.cancel_token.cancelled:
                job.cancel_step = job.step
                job.cancel_token.cancel()
                self._changed(job)

    def stop(self) -> None:
        """Refuse new work, drop the queue, and ask the running job to stop after its current step."""
        with self.lock:
            self._stopping = True
            for job in list(self._queue):
                self._finish(job, CANCELLED, "The server is shutting down.")
            self._queue.clear()
            for job in self._jobs.values():
                if job.state == RUNNING:
                    job.cancel_token.cancel()
            self.lock.notify_all()

    def join(self, timeout: Optional[float] = None) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    # --- the worker thread ---------------------------------------------------------------------------------
    def _changed(self, job: Job) -> None:
        job.version += 1
        self.lock.notify_all()
        if self._loop is not None and job.id in self._waiters:
            self._loop.call_soon_threadsafe(self._wake, job.id)

    def _finish(self, job: Job, state: str, error: Optional[str] = None, result: Optional[JobResult] = None) -> None:
        job.state, job.error, job.result, job.finished = state, error, result, time.time()
        job.expires = job.finished + self.retention.keep_s
        job.nbytes = 0 if result is None else result.nbytes
        job.request = job.preview = None  # the inputs (a mesh, images) and the live preview are not needed any more
        self._changed(job)
        self._forget_old()

    def _held(self) -> int:
        return sum(j.nbytes for j in self._jobs.values() if j.state in FINISHED)

    def _forget_old(self) -> None:
        """Forget expired jobs, then fetched results (oldest fetch first) while over the byte budget."""
        now, keep = time.time(), self.retention
        for job in [j for j in self._jobs.values() if j.expires is not None and j.expires <= now]:
            self._forget(job, f"it expired: finished jobs are kept {keep.keep_s:g} s (serve --keep-results-s)")
        held = self._held()
        if held <= keep.keep_bytes:
            return
        for job in sorted((j for j in self._jobs.values() if j.fetched is not None), key=lambda j: j.fetched):
            if held <= keep.keep_bytes:
                break
            held -= job.nbytes
            self._forget(
                job,
                f"its result was fetched and then evicted to keep the server's results within "
                f"{keep.keep_bytes / 2**20:g} MB (serve --keep-results-mb)",
            )

    def _forget(self, job: Job, why: str) -> None:
        del self._jobs[job.id]
        self._gone[job.id] = why
        while len(self._gone) > GONE_KEPT:
            self._gone.popitem(last=False)

    def _unload_in(self) -> Optional[float]:
        """Seconds until idle models are unloaded (<= 0: now); None when nothing is loaded or unloading is off."""
        if self.idle_unload <= 0 or not self.models.loaded():
            return None
        return self.idle_unload - (time.monotonic() - self._last_work)

    def _next(self) -> Optional[Job]:
        """The next job (None once stopping), unloading the models after `idle_unload` seconds without one."""
        while True:
            with self.lock:
                while True:
                    if self._stopping:
                        return None
                    if self._queue:
                        job = self._queue.popleft()
                        job.state, job.started = RUNNING, time.time()
                        self._changed(job)
                        return job
                    wait = self._unload_in()
                    if wait is not None and wait <= 0:
                        break
                    self.lock.wait(wait)
            log.info("no work for %.0f s: unloading %s", self.idle_unload, ", ".join(self.models.loaded()))
            self.models.unload()

    def _work(self) -> None:
        while (job := self._next()) is not None:
            self._run(job)
            self._last_work = time.monotonic()
        log.info("worker stopped")

    def _run(self, job: Job) -> None:
        last_preview = -PREVIEW_EVERY_S

        def progress(p: Progress) -> None:
            nonlocal last_preview
            preview = None
            if p.preview is not None and time.monotonic() - last_preview >= PREVIEW_EVERY_S:
                preview, last_preview = p.preview(), time.monotonic()  # outside the lock: it waits for the device
            with self.lock:
                job.stage, job.step, job.total, job.message = p.stage, p.step, p.total, p.message
                if preview is not None:
                    job.preview = preview
                self._changed(job)

        log.info("job %s (%s) started", job.id, job.kind)
        t0 = time.perf_counter()
        result, error = None, None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", MeshDreamWarning)
            try:
                result = run_job(job.request, self.models, progress, job.cancel_token)
                state = DONE
            except CancelledError as exc:
                state, error = CANCELLED, str(exc)
            except MeshDreamError as exc:
                state, error = FAILED, str(exc)
            except Exception as exc:  # a bug or an exhausted device: report it and keep serving
                log.exception("job %s failed", job.id)
                state, error = FAILED, f"{type(exc).__name__}: {exc} (internal error; the server log has details)"
        for w in caught:
            if not issubclass(w.category, MeshDreamWarning):
                log.warning("%s: %s", w.category.__name__, w.message)
        if result is not None:
            result.timings.update(queued=round(job.started - job.submitted, 4), job=round(time.perf_counter() - t0, 4))
        with self.lock:
            job.warnings = [str(w.message) for w in caught if issubclass(w.category, MeshDreamWarning)]
            self._finish(job, state, error, result)
        log.info("job %s %s in %.2f s%s", job.id, state, time.perf_counter() - t0, f": {error}" if error else "")


def _timed(timings: dict, name: str, fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    timings[name] = round(time.perf_counter() - t, 4)
    return out


def _load(mesh: MeshInput, timings: dict, progress, cancel) -> trimesh.Trimesh:
    """The job's mesh, with the time its unwrap took (if any) as "unwrap", apart from the rest of "load_mesh"."""
    out = _timed(timings, "load_mesh", mesh.load, progress, cancel)
    timings["unwrap"] = mesh_info(out).unwrap_seconds
    timings["load_mesh"] = round(timings["load_mesh"] - timings["unwrap"], 4)
    return out


def run_job(req: Request, models: ModelCache, progress, cancel) -> JobResult:
    """Any kind of job: its kind's core function (meshdream.jobs.KINDS) with the request's inputs and settings."""
    kind = KINDS[req.kind]
    timings: dict[str, float] = {}
    args = {**req.inputs, **kind.fixed, **req.settings}
    mesh = None if req.mesh is None else _load(req.mesh, timings, progress, cancel)
    if mesh is not None:
        args["mesh"] = mesh
    if req.model is not None:
        args["generator"] = _timed(timings, "load_model", models.get, req.model)
    if req.inpaint_model is not None:
        args["inpaint_generator"] = models.get(req.inpaint_model)
    if req.cameras is not None:
        to_normalized = mesh_info(mesh).to_normalized
        view_resolution = resolve_view_resolution(args["generator"], args.get("view_resolution"))
        args["cameras"] = [c.camera(to_normalized, view_resolution) for c in req.cameras]
    if "device" in kind.inputs:
        args["device"] = models.device
    if "upscaler" in kind.settings:
        spec = args.get("upscaler", kind.default("upscaler"))
        scale = args.get("scale", kind.default("scale"))
        args["upscaler"] = _timed(timings, "load_model", models.upscaler, spec, scale)
    if isinstance(args.get("material_model"), str):  # a spec the server resolved at submit
        args["material_model"] = _timed(timings, "load_material_model", models.material_model, args["material_model"])
    out = _timed(timings, kind.name, kind.call, **args, progress=progress, cancel=cancel)
    prompts, stages = {}, {}
    if kind.returns == CREATE_RESULT:  # a new mesh with its texture; the split of the sentence is reported
        stages = out.timings  # shape, mesh, unwrap, texture
        prompts = {"shape": out.shape_prompt, "texture": out.texture_prompt}
        mesh, out = out.mesh, out.texture
    if kind.returns in (TEXTURE_RESULT, CREATE_RESULT):
        return JobResult(
            {**timings, **out.timings, **stages},
            texture=out.texture,
            textures=out.textures,
            weight=out.weight,
            views=[image for _, image in out.views],
            mesh=mesh,
            maps=out.maps,
            page_maps=out.page_maps,
            prompts=prompts,
        )
    if kind.returns == TEXTURE:
        return JobResult(timings, texture=out, mesh=mesh)
    shape = None
    if req.mesh_settings is not None:
        shape = _timed(timings, "mesh", lambda: load_mesh(points_to_mesh(out, **req.mesh_settings)))
    return JobResult(timings, points=out, mesh=shape)
