"""The /v1 HTTP API of `meshdream serve`, its guards (token, body size, one error format) and `serve` itself.

Every error answers {"error": "<message>"}: 400 bad JSON, 401 token, 404 unknown job, 409 result not ready,
413 body too large, 422 invalid field (the message names it), 503 shutting down or results not fetched fill the
server's result budget.
"""

from __future__ import annotations

import asyncio
import atexit
import hmac
import ipaddress
import logging
import os
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import TypeAdapter, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..errors import InvalidParameterError, MeshDreamError
from ..jobs import KINDS, Limits
from .jobs import DONE, FAILED, Job, ModelSpec
from .models import ModelCatalog
from .schema import DEFAULT_PARTS, RESULT_PARTS, JobIn, Submit, encode_result, job_request, preview_png, status
from .worker import ModelCache, Retention, ServerFullError, Worker, log

DEFAULT_PORT = 7860
MAX_WAIT_S = 30.0  # longest a status request may wait for news
EXIT_JOIN_S = 10.0  # longest the interpreter's exit waits for a running job to stop
DRAIN_LIMIT = 2**30  # bytes of a refused body read and dropped before answering; past that the client is cut off


def _error(code: int, message: str, headers: Optional[dict] = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=code, headers=headers)


class Guard:
    """ASGI middleware run before any route: bearer token (constant-time compare), then the body size limit.

    The body is read here (and handed on) so an oversized one is refused without being held whole, whether or
    not it declared a Content-Length.
    """

    def __init__(self, app, token: Optional[str], max_body: int) -> None:
        self.app = app
        self.expected = None if token is None else f"Bearer {token}".encode()
        self.max_body = max_body

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        if self.expected is not None:
            given = headers.get(b"authorization")
            if given is None or not hmac.compare_digest(given, self.expected):
                why = "the token is wrong" if given else "this server needs a token"
                message = f"Unauthorized: {why}; send 'Authorization: Bearer <token>' (Client(url, token=...))."
                return await self._refuse(_error(401, message, {"WWW-Authenticate": "Bearer"}), scope, receive, send)
        too_large = _error(
            413, f"The request body is over the server's limit of {self.max_body} bytes (serve --max-body-mb)."
        )
        declared = headers.get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.max_body:
            return await self._refuse(too_large, scope, receive, send)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_body:
                return await self._refuse(too_large, scope, receive, send)
            more = message.get("more_body", False)
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, response: JSONResponse, scope, receive, send) -> None:
        """Read (and drop) the rest of the body first, up to a bound, so the client is not cut off mid-upload and
        gets to read the answer."""
        dropped, more = 0, True
        while more and dropped <= DRAIN_LIMIT:
            message = await receive()
            dropped += len(message.get("body", b""))
            more = message["type"] == "http.request" and message.get("more_body", False)
        await response(scope, receive, send)


JOBS = TypeAdapter(JobIn)


async def _body(request: Request) -> bytes:
    return await request.body()


async def _disconnected(receive) -> None:
    """Return once the client has closed its connection (the ASGI server's http.disconnect)."""
    while (await receive())["type"] != "http.disconnect":
        pass  # the request's own (empty) body


def _validation_error(exc: ValidationError) -> tuple[int, str]:
    """400 for JSON that does not parse, else 422 naming each bad field (a union's member names left out)."""
    errors = exc.errors(include_url=False)
    if any(e["type"] == "json_invalid" for e in errors):
        return 400, f"The request body is not valid JSON: {errors[0]['msg']}."
    fields = []
    for e in errors:
        loc = [str(p) for p in e["loc"]]
        loc = [p for p in loc[1 if loc and loc[0] in KINDS else 0 :] if not (p[0].isupper() or "[" in p)]
        fields.append(f"{'.'.join(loc) or 'body'}: {e['msg'].removeprefix('Value error, ')}")
    return 422, "Invalid request: " + "; ".join(dict.fromkeys(fields))


def create_app(
    worker: Worker,
    default_model: ModelSpec,
    token: Optional[str] = None,
    max_body: int = 256 * 2**20,
    limits: Limits = Limits(),
    catalog: ModelCatalog = ModelCatalog(),
) -> FastAPI:
    device = worker.models.device_name
    context = Submit(default_model, limits, catalog)

    @asynccontextmanager
    async def lifespan(app):
        worker.serve_loop(asyncio.get_running_loop())
        worker.start()
        log.info("MeshDream %s serving /v1 (default model %s, device %s)", __version__, default_model.key, device)
        yield
        worker.stop()
        await asyncio.to_thread(worker.join)  # the running job stops after its current step
        worker.serve_loop(None)

    app = FastAPI(title="MeshDream", version=__version__, lifespan=lifespan)
    app.add_middleware(Guard, token=token, max_body=max_body)

    @app.exception_handler(RequestValidationError)
    async def invalid_query(request, exc: RequestValidationError):
        fields = (f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in exc.errors())
        return _error(422, "Invalid request: " + "; ".join(fields))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc: StarletteHTTPException):
        return _error(exc.status_code, str(exc.detail))

    def get_job(job_id: str) -> Job:
        job = worker.job(job_id)
        if job is None:
            why = worker.gone(job_id)
            if why is None:
                raise HTTPException(404, f"No job {job_id!r} on this server.")
            raise HTTPException(404, f"Job {job_id!r} is gone: {why}.")
        return job

    def job_status(job: Job) -> dict:
        position = worker.queue_position(job)
        with worker.lock:
            return status(job, position)

    # Health and status run on the event loop (they only read the job table), so they answer however many
    # requests hold the threadpool (submit decoding a body, a result being encoded) or wait in long polls.
    @app.get("/v1/health")
    async def health():
        return {
            "status": "stopping" if worker.stopping else "ok",
            "version": __version__,
            "api": "v1",
            "device": device,
            "default_model": default_model.key,
            "models": worker.models.loaded(),
            "queue": worker.queue_length(),
            "running": worker.running(),
            "polls": worker.polls(),
        }

    @app.get("/v1/models")
    def models():
        """What jobs may name: texture models ("model", "inpaint_model", their options), upscalers
        (settings.upscaler), material models (settings.material_model, with settings.pbr), shape models
        (settings.shape_model of shape jobs) and the built-in one's categories; and the server's size limits."""
        from ..shapes import shape_categories

        return {
            "texture_models": catalog.texture_models(),
            "upscalers": catalog.upscalers(),
            "material_models": catalog.material_models(),
            "shape_models": catalog.shape_models(),
            "shape_categories": shape_categories(),
            "limits": asdict(limits),
        }

    body_schema = {"content": {"application/json": {"schema": JOBS.json_schema()}}, "required": True}

    @app.post("/v1/jobs", status_code=202, openapi_extra={"requestBody": body_schema})
    def submit(body: bytes = Depends(_body)):
        """Queue a job (any content type; the body is JSON). Answers its status, "queued" with its position."""
        if worker.stopping:
            raise HTTPException(503, "The server is shutting down; no new jobs are taken.")
        try:
            job = JOBS.validate_json(body, context=context)
            request = job_request(job, context)
        except ValidationError as exc:
            raise HTTPException(*_validation_error(exc)) from None
        except InvalidParameterError as exc:
            raise HTTPException(422, f"Invalid request: {exc}") from None
        try:
            queued = worker.submit(job.kind, request)
        except ServerFullError as exc:
            raise HTTPException(503, str(exc)) from None
        return JSONResponse(job_status(queued), status_code=202)

    @app.get("/v1/jobs/{job_id}")
    async def get_status(
        request: Request,
        job_id: str,
        after: int = Query(-1, description="answer once the job's version is newer than this"),
        wait: float = Query(0.0, ge=0, le=MAX_WAIT_S, description="seconds to wait for news (long poll)"),
        preview: bool = Query(
            False, description="add preview_png: the views, live (denoising estimate) while running, then the result's"
        ),
    ):
        job = get_job(job_id)
        if wait:
            await worker.wait_for_change(job, after, wait, _disconnected(request.receive))
        out = job_status(job)
        if preview:
            out["preview_png"] = await asyncio.to_thread(preview_png, job)  # a PNG encode: off the loop
        return out

    @app.post("/v1/jobs/{job_id}/cancel")
    def cancel(job_id: str):
        job = get_job(job_id)
        worker.cancel(job)
        return job_status(job)

    @app.get("/v1/jobs/{job_id}/result")
    def result(job_id: str, include: str = Query(",".join(DEFAULT_PARTS), description=", ".join(RESULT_PARTS))):
        parts = tuple(p.strip() for p in include.split(",") if p.strip())
        unknown = [p for p in parts if p not in RESULT_PARTS]
        if unknown:
            raise HTTPException(422, f"Invalid request: include: unknown part(s) {unknown}; use {list(RESULT_PARTS)}.")
        job = get_job(job_id)
        if job.state != DONE:
            why = f"failed: {job.error}" if job.state == FAILED else f"is {job.state}"
            raise HTTPException(409, f"Job {job_id} {why}; a result exists only once it is done.")
        out = JSONResponse(encode_result(job, parts))
        worker.fetched(job)
        return out

    return app


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Server(uvicorn.Server):
    """Ctrl-C / SIGTERM first ask the running job to stop after its current step, then shut the server down."""

    def __init__(self, config: uvicorn.Config, worker: Worker) -> None:
        super().__init__(config)
        self.worker = worker

    def handle_exit(self, sig, frame) -> None:
        self.worker.stop()
        super().handle_exit(sig, frame)


def _watch_parent(server: _Server) -> None:
    """Stop when the process that started us is gone (its crash must not leave the GPU held)."""
    parent = os.getppid()
    while not server.should_exit:
        if os.getppid() != parent:
            log.info("the parent process %d exited; stopping", parent)
            server.worker.stop()
            server.should_exit = True
        time.sleep(1.0)


def serve(
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    token: Optional[str] = None,
    model: str = "builtin",
    model_options: Optional[dict] = None,
    device: str = "auto",
    idle_unload: float = 600.0,
    max_body_mb: float = 256.0,
    keep_results_s: float = 3600.0,
    keep_results_mb: float = 2048.0,
    limits: Limits = Limits(),
    models_dir: Optional[str] = None,
    allow_paths: bool = False,
    exit_with_parent: bool = False,
    log_level: str = "info",
) -> None:
    """Run the server until Ctrl-C / SIGTERM. A host other than loopback needs a token.

    limits: the largest sizes a job may ask for (refused at submit). models_dir: a folder whose entries jobs may
    name as models or upscalers, beside "builtin" and the Hugging Face cache; allow_paths: jobs may also name
    paths on this machine (a private worker; loopback only)."""
    if not is_loopback(host) and not token:
        raise MeshDreamError(
            f"Serving on {host!r} exposes the server beyond this machine; set a token (--token or MESHDREAM_TOKEN) "
            "so only clients that know it are served, or keep the default --host 127.0.0.1."
        )
    if allow_paths and not is_loopback(host):
        raise MeshDreamError(
            f"--allow-paths lets clients name any path on this machine; it is for a private worker on loopback, "
            f"not {host!r}: put the models clients may use in --models-dir instead."
        )
    if models_dir is not None and not Path(models_dir).is_dir():
        raise MeshDreamError(f"--models-dir {models_dir!r} is not a folder; give the folder that holds the models.")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("meshdream: %(message)s"))
    log.addHandler(handler)
    log.setLevel(log_level.upper())
    options = tuple(sorted((k, v) for k, v in (model_options or {}).items() if v is not None))
    worker = Worker(ModelCache(device), idle_unload, Retention(keep_results_s, int(keep_results_mb * 2**20)))
    catalog = ModelCatalog(None if models_dir is None else Path(models_dir).resolve(), allow_paths)
    app = create_app(worker, ModelSpec(model, options), token, int(max_body_mb * 2**20), limits, catalog)
    config = uvicorn.Config(
        app, host=host, port=port, log_level=log_level, access_log=False, timeout_graceful_shutdown=5
    )
    server = _Server(config, worker)
    if exit_with_parent:
        threading.Thread(target=_watch_parent, args=(server,), name="meshdream-parent-watch", daemon=True).start()
    atexit.register(_stop_at_exit, server)
    try:
        server.run()
    finally:
        atexit.unregister(_stop_at_exit)


def _stop_at_exit(server: _Server) -> None:
    """End the worker thread before the interpreter finalizes, when `serve` runs on a daemon thread (in Blender).

    A thread still alive at finalization has its state cleared there, and scipy's per-thread SuperLU allocation
    tracker (left by the UV inpainting's `splu`) raises from its deallocator at that point (it reads the dict's
    values, None, as pointers): Python then reports a bogus stdout flush error and exits with status 120.
    """
    server.should_exit = True
    server.worker.stop()
    server.worker.join(EXIT_JOIN_S)
