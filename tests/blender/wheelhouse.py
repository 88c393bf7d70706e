"""A local wheel folder standing in for the package index in the set-up tests: the core's dependencies (with the
server extra) repacked as wheels from the installed distributions of the Python running the tests, so the add-on's
"Set up local worker" resolves and installs every package with pip (`--no-index --find-links`) and no network.

The core itself is not here: the set-up installs the wheel carried in the add-on's zip. Repacking takes ~1 min for
~1.2 GB (torch), so the folder is kept in the temporary directory, keyed by the installed versions.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib.metadata as metadata
import io
import re
import shutil
import tempfile
import zipfile
from pathlib import Path

from packaging.requirements import Requirement


def _key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(root: str = "meshdream", extras=("server",)) -> list[metadata.Distribution]:
    """The installed distributions `root[extras]` needs, root excluded."""
    seen, todo = {}, [(root, set(extras))]
    while todo:
        name, wanted = todo.pop()
        if _key(name) in seen:
            continue
        dist = seen[_key(name)] = metadata.distribution(name)
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in wanted or {""}):
                todo.append((req.name, set(req.extras)))
    return [d for k, d in sorted(seen.items()) if k != _key(root)]


def _wheel_name(dist: metadata.Distribution) -> str:
    tags = [line.split(":", 1)[1].strip() for line in dist.read_text("WHEEL").splitlines() if line.startswith("Tag:")]
    python = ".".join(sorted({t.split("-")[0] for t in tags}))
    abi = ".".join(sorted({t.split("-")[1] for t in tags}))
    platform = ".".join(sorted({t.split("-")[2] for t in tags}))
    name = re.sub(r"[-_.]+", "_", dist.metadata["Name"])
    return f"{name}-{dist.version}-{python}-{abi}-{platform}.whl"


def repack(dist: metadata.Distribution, folder: Path) -> Path:
    """One installed distribution as a wheel: its files under site-packages, a fresh RECORD (no compression:
    torch's 700 MB would take minutes to deflate)."""
    info = Path(dist._path)  # the .dist-info folder
    site = info.parent
    skip = {"INSTALLER", "REQUESTED", "direct_url.json", "RECORD"}
    out = folder / _wheel_name(dist)
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        for file in dist.files or []:
            path = (site / file).resolve()
            rel = Path(file).as_posix()
            if rel.startswith("..") or "__pycache__" in rel or not path.is_file():
                continue  # scripts outside site-packages (pip makes them from entry_points.txt), bytecode
            if rel.startswith(info.name + "/") and Path(rel).name in skip:
                continue
            data = path.read_bytes()
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            writer.writerow([rel, f"sha256={digest}", len(data)])
            zf.writestr(rel, data)
        writer.writerow([f"{info.name}/RECORD", "", ""])
        zf.writestr(f"{info.name}/RECORD", record.getvalue())
    return out


def wheelhouse() -> Path:
    """The folder of repacked wheels for this Python's installed dependency versions (built once)."""
    dists = closure()
    key = hashlib.sha256("\n".join(f"{d.metadata['Name']}=={d.version}" for d in dists).encode()).hexdigest()[:12]
    folder = Path(tempfile.gettempdir()) / f"meshdream-test-wheelhouse-{key}"
    if (folder / "complete").exists():
        return folder
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    for dist in dists:
        repack(dist, partial)
    (partial / "complete").write_text("\n".join(sorted(p.name for p in partial.glob("*.whl"))))
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    return folder
