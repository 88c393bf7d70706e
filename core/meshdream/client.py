"""Client for `meshdream serve`, in the standard library only: copy this one file into any Python >= 3.9 (Blender's,
Maya's, Houdini's...) and send jobs to the server, which runs where torch and the models are installed.

    from meshdream import client          # or `import client` with this file copied beside your script
    c = client.ensure_server(python="/path/to/venv/bin/python")   # or client.Client("http://127.0.0.1:7860")
    job = c.submit_texture("spot.obj", "red brick", n_views=8, texture_size=1024)
    result = c.wait(job, progress=lambda s: print(s["stage"], s["step"], "/", s["total"]))
    open("spot.glb", "wb").write(result.glb)

Meshes are a file path, or arrays in your own coordinates: {"vertices": (N, 3), "faces": (F, 3), "uvs": (F, 3, 2)
per corner, optional}; arrays may be nested lists or numpy arrays (sent as raw bytes; numpy is never imported
here). Cameras are {"view": 4x4 world-to-camera matrix, "fov": degrees, "resolution": pixels or (w, h)}; without
"resolution" the job's view resolution (the model's unless given) sizes the larger side at "aspect" (w / h). Every
keyword setting of texture_mesh / restyle_texture / upscale_texture / inpaint_uv / generate_shape / create_asset
passes through **settings (one left out takes the core's default, the server's for model=); model= is a spec
(one the server lists at /v1/models: "builtin", a cached Hugging Face id, a --models-dir entry) or {"spec": ...,
"options": {load_generator keywords}}. pbr=True (texture, restyle) also makes roughness, metallic and normal maps
(Result.maps_png; material_model= one the server lists under "material_models"); Result.save writes them all.
Any failure raises `ClientError` carrying the server's message.
"""

from __future__ import annotations

import atexit
import base64
import ipaddress
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

DEFAULT_URL = "http://127.0.0.1:7860"
MAP_PARTS = ("roughness", "metallic", "normal")  # a pbr=True job's maps beside its base colour ("texture")
RESULT_PARTS = ("texture", "glb", "weight", "seen", "mesh", "points", "views", *MAP_PARTS)


class ClientError(Exception):
    """What went wrong, in the server's words. status: the HTTP status (None when no server answered)."""

    def __init__(self, message: str, status: Optional[int] = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class Array:
    """An array as the server sent it. `np.asarray(a)` views it without a copy; `tolist()` needs nothing."""

    def __init__(self, dtype: str, shape: List[int], data: bytes) -> None:
        self.dtype, self.shape, self.data = dtype, tuple(shape), data

    @classmethod
    def decode(cls, d: Dict[str, Any]) -> "Array":
        return cls(d["dtype"], d["shape"], base64.b64decode(d["data"]))

    @property
    def __array_interface__(self) -> Dict[str, Any]:
        return {"shape": self.shape, "typestr": self.dtype, "data": self.data, "version": 3}

    def tolist(self) -> list:
        import array

        codes = {"f4": "f", "f8": "d", "i4": "i", "i8": "q", "u1": "B", "b1": "B"}
        flat = array.array(codes[self.dtype[1:]], self.data)
        if sys.byteorder == "big" and flat.itemsize > 1:
            flat.byteswap()
        values = [bool(v) for v in flat] if self.dtype.endswith("b1") else flat.tolist()
        for n in reversed(self.shape[1:]):
            values = [values[i : i + n] for i in range(0, len(values), n)]
        return values

    def __repr__(self) -> str:
        return f"Array(dtype={self.dtype!r}, shape={self.shape})"


@dataclass
class Result:
    """A finished job. Images are PNG bytes, `glb` a self-contained textured file in your coordinates."""

    id: str
    kind: str
    timings: Dict[str, float]
    texture_png: Optional[bytes] = None
    glb: Optional[bytes] = None
    weight: Optional[Array] = None  # (S, S) float32 bake confidence
    seen: Optional[Array] = None  # (S, S) bool: texels a view saw (the rest were inpainted)
    mesh: Optional[Dict[str, Any]] = None  # vertices, faces, per-corner uvs (Arrays, your frame); unwrapped
    points: Optional[Array] = None  # (N, 3) float32 shape points
    views_png: List[bytes] = field(default_factory=list)
    # pbr=True: PNG per map, "roughness" / "metallic" (grey, glTF's perceptual roughness and metalness) and "normal"
    # (tangent space, OpenGL +Y as glTF and Blender read it); the base colour is texture_png. The GLB holds them all.
    maps_png: Dict[str, bytes] = field(default_factory=dict)
    prompts: Dict[str, str] = field(default_factory=dict)  # create: {"shape": ..., "texture": ...} as understood

    def save(self, path, overwrite: bool = False) -> List[str]:
        """Write the result where users look: the GLB at `path` (.glb), and beside it the base colour as
        <stem>.png and each PBR map as <stem>_<map>.png (those fetched). Existing files are kept unless
        `overwrite` (ClientError naming the first). Returns the paths written, the GLB first."""
        path = os.fspath(path)
        stem, suffix = os.path.splitext(path)
        if suffix.lower() != ".glb":
            raise ClientError(f"Cannot write '{path}'; name a .glb file (the maps are written beside it).")
        if self.glb is None:
            raise ClientError("The result has no GLB; fetch it with include containing 'glb' (the default).")
        files = {path: self.glb}
        if self.texture_png is not None:
            files[stem + ".png"] = self.texture_png
        files.update({f"{stem}_{name}.png": png for name, png in self.maps_png.items()})
        existing = [p for p in files if os.path.exists(p)]
        if existing and not overwrite:
            raise ClientError(f"'{existing[0]}' already exists; choose another name or pass overwrite=True.")
        for p in sorted(files, key=lambda p: p == path):  # the GLB last: once it is there, so is the rest
            with open(p, "wb") as f:
                f.write(files[p])
        return [path, *(p for p in files if p != path)]

    @classmethod
    def decode(cls, d: Dict[str, Any]) -> "Result":
        def png(key):
            return base64.b64decode(d[key]) if key in d else None

        def arr(key):
            return Array.decode(d[key]) if key in d else None

        mesh = d.get("mesh")
        if mesh is not None:
            mesh = {k: v if k == "unwrapped" else Array.decode(v) for k, v in mesh.items()}
        return cls(
            d["id"],
            d["kind"],
            d["timings"],
            texture_png=png("texture_png"),
            glb=png("glb"),
            weight=arr("weight"),
            seen=arr("seen"),
            mesh=mesh,
            points=arr("points"),
            views_png=[base64.b64decode(v) for v in d.get("views_png", [])],
            maps_png={name: png(name + "_png") for name in MAP_PARTS if name + "_png" in d},
            prompts=d.get("prompts", {}),
        )


def _array(value: Any) -> Any:
    """numpy-like arrays as raw little-endian bytes; anything else (nested lists) as it is."""
    if hasattr(value, "dtype") and hasattr(value, "tobytes"):
        dtype = value.dtype.str
        if dtype[0] == ">":  # the wire is little-endian
            value, dtype = value.byteswap(), "<" + dtype[1:]
        return {"dtype": dtype, "shape": list(value.shape), "data": base64.b64encode(value.tobytes()).decode()}
    return value


def _file(path: Any) -> bytes:
    try:
        with open(os.fspath(path), "rb") as f:
            return f.read()
    except OSError as exc:
        raise ClientError(f"Cannot read '{path}': {exc.strerror}.") from None


def _mesh(mesh: Any, unwrap: str, uv_set: int = 0) -> Dict[str, Any]:
    """A path (uploaded), a dict or (vertices, faces[, uvs]) tuple, or an object with .vertices / .faces.
    uv_set: the UV set (TEXCOORD_n) of a .glb file to texture; arrays carry one. Sent only when not the first,
    so servers from before it existed take the request."""
    options = {"unwrap": unwrap, **({"uv_set": uv_set} if uv_set else {})}
    if isinstance(mesh, (str, os.PathLike)):
        data = base64.b64encode(_file(mesh)).decode()
        return {"file": {"name": os.path.basename(os.fspath(mesh)), "data": data}, **options}
    if isinstance(mesh, (tuple, list)):
        mesh = dict(zip(("vertices", "faces", "uvs"), mesh))
    elif not isinstance(mesh, dict):
        mesh = {"vertices": mesh.vertices, "faces": mesh.faces}
    return {**{k: _array(v) for k, v in mesh.items() if v is not None}, **options}


def _image(image: Any) -> Optional[Dict[str, Any]]:
    """A path or bytes of an image file, or an array (uint8 or float in [0, 1])."""
    if image is None:
        return None
    if isinstance(image, (str, os.PathLike)):
        image = _file(image)
    if isinstance(image, (bytes, bytearray)):
        return {"png": base64.b64encode(image).decode()}
    return _array(image)


def _camera(camera: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    return None if camera is None else {**camera, "view": _array(camera["view"])}


class Client:
    """One MeshDream server. Jobs are ids (str); `wait` returns a `Result`."""

    def __init__(self, url: str = DEFAULT_URL, token: Optional[str] = None, timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.process: Optional[subprocess.Popen] = None  # set by ensure_server when it started the server
        host = urllib.parse.urlsplit(self.url).hostname or ""
        # A proxy from the environment must not intercept a server on this machine.
        proxies = {} if _is_loopback(host) else None
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler(proxies))

    def _request(self, method: str, path: str, body: Any = None, timeout: Optional[float] = None) -> Any:
        data = None if body is None else json.dumps({k: v for k, v in body.items() if v is not None}).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with self._opener.open(req, timeout=timeout or self.timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            text = exc.read().decode("utf-8", "replace")
            try:
                message = json.loads(text)["error"]
            except (ValueError, KeyError, TypeError):
                message = text.strip() or exc.reason
            raise ClientError(f"{message} (HTTP {exc.code})", exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ClientError(
                f"No MeshDream server answers at {self.url} ({reason}); start one with `meshdream serve` "
                "or use client.ensure_server()."
            ) from None

    # --- server ----------------------------------------------------------------------------------------------
    def health(self) -> Dict[str, Any]:
        """version, device, loaded models, queue length."""
        return self._request("GET", "/v1/health")

    def models(self) -> Dict[str, Any]:
        """Texture models available offline on the server, and the shape categories."""
        return self._request("GET", "/v1/models")

    # --- jobs ------------------------------------------------------------------------------------------------
    def submit(self, job: Dict[str, Any]) -> str:
        """Queue a raw /v1 job (see the submit_* helpers); returns its id."""
        return self._request("POST", "/v1/jobs", job)["id"]

    def submit_texture(
        self,
        mesh,
        prompt: str,
        *,
        cameras=None,
        model=None,
        inpaint_model=None,
        reference_image=None,
        unwrap: str = "auto",
        uv_set: int = 0,
        **settings,
    ) -> str:
        """texture_mesh: strategy="sync" (default) or "sequential"; cameras default to orbit views. uv_set: which
        UV set (TEXCOORD_n) of a .glb file to texture."""
        return self.submit(
            {
                "kind": "texture",
                "mesh": _mesh(mesh, unwrap, uv_set),
                "prompt": prompt,
                "model": model,
                "inpaint_model": inpaint_model,
                "reference_image": _image(reference_image),
                "cameras": None if cameras is None else [_camera(c) for c in cameras],
                "settings": settings,
            }
        )

    def submit_project(
        self,
        mesh,
        prompt: str,
        *,
        camera=None,
        init_image=None,
        model=None,
        reference_image=None,
        unwrap: str = "auto",
        uv_set: int = 0,
        **settings,
    ) -> str:
        """Paint what one camera (e.g. the viewport) sees; init_image: img2img from it at settings strength."""
        return self.submit(
            {
                "kind": "project",
                "mesh": _mesh(mesh, unwrap, uv_set),
                "prompt": prompt,
                "model": model,
                "camera": _camera(camera),
                "init_image": _image(init_image),
                "reference_image": _image(reference_image),
                "settings": settings,
            }
        )

    def submit_inpaint(
        self, mesh, texture, mask=None, *, model=None, unwrap: str = "auto", uv_set: int = 0, **settings
    ) -> str:
        """inpaint_uv: fill `mask` texels (white) or else the texture's transparent ones, and smooth seams."""
        return self.submit(
            {
                "kind": "inpaint",
                "mesh": _mesh(mesh, unwrap, uv_set),
                "texture": _image(texture),
                "mask": _image(mask),
                "model": model,
                "settings": settings,
            }
        )

    def submit_restyle(
        self, mesh, texture, prompt: str, *, model=None, reference_image=None, uv_set: int = 0, **settings
    ) -> str:
        """restyle_texture: the mesh's `texture` (square, power-of-two size; on the mesh's own UVs, which are kept)
        re-denoised toward `prompt`; strength= 0 keeps it, 1 replaces it. The result has a texture and a GLB."""
        return self.submit(
            {
                "kind": "restyle",
                "mesh": _mesh(mesh, "never", uv_set),
                "texture": _image(texture),
                "prompt": prompt,
                "model": model,
                "reference_image": _image(reference_image),
                "settings": settings,
            }
        )

    def submit_upscale(self, mesh, texture, *, uv_set: int = 0, **settings) -> str:
        """upscale_texture: the mesh's `texture` (on its own UVs) 2x or 4x (scale=), chart by chart; upscaler= a
        name the server lists (GET /v1/models "upscalers": builtin, lanczos, its --models-dir files; a path on its
        machine where it runs with --allow-paths). The result has a texture and a GLB."""
        return self.submit(
            {"kind": "upscale", "mesh": _mesh(mesh, "never", uv_set), "texture": _image(texture), "settings": settings}
        )

    def submit_shape(self, prompt, *, mesh=False, **settings) -> str:
        """generate_shape (e.g. "tall chair"); mesh=True (or points_to_mesh settings) also returns a mesh."""
        return self.submit({"kind": "shape", "prompt": prompt, "mesh": mesh, "settings": settings})

    def submit_create(self, prompt: str, *, model=None, **settings) -> str:
        """create_asset: a closed, textured mesh from a sentence ("a tall oak chair"); the result has the mesh (glb,
        mesh), its texture (pbr=True: maps too) and `prompts`, what the shape and texture models were given."""
        return self.submit({"kind": "create", "prompt": prompt, "model": model, "settings": settings})

    def status(self, job: str, after: int = -1, wait: float = 0.0, preview: bool = False) -> Dict[str, Any]:
        """state (queued, running, done, failed, cancelled), stage, step / total, error, queue_position...

        wait: seconds to wait for a change past version `after` (long poll); preview: add the views' PNG (live, at
        latent resolution, while the job runs; the result's views once done).
        """
        query = urllib.parse.urlencode({"after": after, "wait": wait, "preview": str(preview).lower()})
        return self._request("GET", f"/v1/jobs/{urllib.parse.quote(job)}?{query}", timeout=wait + self.timeout)

    def cancel(self, job: str) -> Dict[str, Any]:
        """Drop a queued job, or stop a running one within one step."""
        return self._request("POST", f"/v1/jobs/{urllib.parse.quote(job)}/cancel")

    def result(self, job: str, include=None) -> Result:
        """A done job's result; include: parts to fetch (default all but "views"; see RESULT_PARTS)."""
        query = "" if include is None else "?" + urllib.parse.urlencode({"include": ",".join(include)})
        return Result.decode(self._request("GET", f"/v1/jobs/{urllib.parse.quote(job)}/result{query}"))

    def wait(
        self,
        job: str,
        progress: Optional[Callable[[Dict[str, Any]], None]] = None,
        timeout: Optional[float] = None,
        include=None,
    ) -> Result:
        """Block until the job ends; `progress(status)` is called on every change. Failure or cancel raise."""
        deadline = None if timeout is None else time.monotonic() + timeout
        version = -1
        while True:
            left = 10.0 if deadline is None else min(10.0, deadline - time.monotonic())
            if left <= 0:
                raise ClientError(f"Job {job} did not finish within {timeout} s; it keeps running (cancel it?).")
            s = self.status(job, after=version, wait=left)
            if s["version"] != version:
                version = s["version"]
                if progress is not None:
                    progress(s)
            if s["state"] == "done":
                return self.result(job, include)
            if s["state"] in ("failed", "cancelled"):
                raise ClientError(s["error"] or f"Job {job} was {s['state']}.")


def _is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _stop(process: subprocess.Popen) -> None:
    """Ask the server to stop after its current step (SIGTERM); kill it if it takes too long."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def ensure_server(
    python: Optional[str] = None,
    port: int = 7860,
    host: str = "127.0.0.1",
    token: Optional[str] = None,
    timeout: float = 300.0,
    args=(),
    cancel=None,
) -> Client:
    """A client for the server at host:port, starting `PYTHON -m meshdream serve` first if nothing answers.

    python: an interpreter with meshdream[server] installed (default: this one). A server started here runs as
    a child process (its log in a temporary file), stops when this process exits, and is on `client.process`;
    on loopback it is this user's private worker, so its jobs may name models by path (serve --allow-paths).
    args: more `meshdream serve` options, e.g. ["--idle-unload", "300"]. cancel: anything with `is_set()` (a
    threading.Event); once set, a server still starting is stopped and ClientError raised. A started server is
    reaped by a daemon thread as soon as it exits, so a killed one never lingers as a zombie.
    """
    url_host = f"[{host}]" if ":" in host else host
    client = Client(f"http://{url_host}:{port}", token)
    try:
        client.health()
        return client
    except ClientError as exc:
        if exc.status is not None:  # something answers, but refuses us: starting another would only collide
            raise
    log = tempfile.NamedTemporaryFile(prefix="meshdream-serve-", suffix=".log", delete=False)
    env = dict(os.environ)
    if token:
        env["MESHDREAM_TOKEN"] = token  # not on the command line, where other users could read it
    command = [python or sys.executable, "-m", "meshdream", "serve", "--host", host, "--port", str(port)]
    try:
        process = subprocess.Popen(
            [*command, "--exit-with-parent", *(["--allow-paths"] if _is_loopback(host) else []), *args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    except OSError as exc:
        raise ClientError(f"Cannot start {command[0]}: {exc.strerror}; give the Python that has meshdream.") from None
    threading.Thread(target=process.wait, name="meshdream-server-reaper", daemon=True).start()
    atexit.register(_stop, process)
    client.process = process
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cancel is not None and cancel.is_set():
            _stop(process)
            raise ClientError("Cancelled while the server was starting.")
        if process.poll() is not None:
            with open(log.name, encoding="utf-8", errors="replace") as f:
                tail = f.read()[-2000:].strip()
            raise ClientError(f"`{' '.join(command)}` exited with code {process.returncode}:\n{tail}")
        try:
            client.health()
            return client
        except ClientError:
            time.sleep(0.25)
    _stop(process)
    raise ClientError(f"`{' '.join(command)}` did not answer within {timeout} s; its log is {log.name}.")
