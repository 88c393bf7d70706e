"""summary.json: the batch's record, rewritten atomically after every item so a crash or Ctrl-C loses nothing
that finished, and the next run knows what to skip. Any scheduler (in-process, Ray) records through `Summary`.

An item's files are moved into place before summary.json can say so; a `Placed` marker written just before the
move bridges that gap, so a run killed in between does not leave an output the next run disowns."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Optional

from ..errors import InvalidParameterError
from ..files import TEMP_PREFIX, writing
from .jobs import DONE, FAILED, SKIPPED, BatchItem, ItemResult

SUMMARY = "summary.json"
RUNNING, FINISHED, CANCELLED = "running", "finished", "cancelled"


def marker_path(out: Path) -> Path:
    """Where the `Placed` marker of output `out` lives: beside it, named like every batch temporary."""
    return out.with_name(f"{TEMP_PREFIX}{out.name}.json")


@dataclass(frozen=True)
class Placed:
    """Written by `texture_item` just before it moves an item's files into place, removed once summary.json
    records the item. A run killed between the move and that record leaves it; the next run then records the
    output as done if the file there still holds the bytes the marker describes (by content, not inode: on some
    shared file systems a rename is a copy)."""

    output: str  # relative to the out folder, as the item names it
    input: str  # the item's source or input, as summary.json names it
    seconds: float  # how long the attempt that wrote it took
    sha256: str  # of the output file's bytes

    @staticmethod
    def digest(path: Path) -> str:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()

    def write(self, out: Path) -> None:
        with writing(marker_path(out)) as (temp,):
            temp.write_text(json.dumps(asdict(self)), encoding="utf-8")

    @classmethod
    def read(cls, marker: Path) -> Optional["Placed"]:
        """The marker in file `marker`, or None if it holds none (another temporary, or a half-written one)."""
        try:
            data = json.loads(marker.read_text(encoding="utf-8"))
            return cls(str(data["output"]), str(data["input"]), float(data["seconds"]), str(data["sha256"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None


class Summary:
    """The out folder's summary.json: results keyed by output file, earlier runs' entries kept."""

    def __init__(self, out_dir: str | os.PathLike) -> None:
        self.out_dir = Path(out_dir).resolve()
        self.path = self.out_dir / SUMMARY
        self.state = RUNNING
        self._results: dict[str, ItemResult] = {}
        if self.path.exists():
            try:
                entries = json.loads(self.path.read_text(encoding="utf-8"))["items"]
                for entry in entries:
                    result = ItemResult.from_dict(entry)
                    self._results[self._key(result.output)] = result
            except (ValueError, KeyError, TypeError) as exc:
                raise InvalidParameterError(
                    f"'{self.path}' is not a MeshDream batch summary ({exc}); move it away or choose another --out."
                ) from None

    def output_path(self, item: BatchItem) -> Path:
        return self.out_dir / item.output

    def _key(self, output: str) -> str:
        path = Path(output)
        if path.is_absolute():
            try:
                path = path.relative_to(self.out_dir)
            except ValueError:  # the folder was moved: this entry cannot be matched to an output here
                pass
        return path.as_posix().lower()

    def previous(self, item: BatchItem) -> Optional[ItemResult]:
        return self._results.get(self._key(item.output))

    def is_finished(self, item: BatchItem) -> bool:
        """Done by an earlier run: summary.json says so and the output is still there."""
        result = self.previous(item)
        return result is not None and result.status in (DONE, SKIPPED) and self.output_path(item).exists()

    def record(self, result: ItemResult) -> None:
        """Record one item's result; from then on summary.json vouches for its output, not its marker."""
        self._results[self._key(result.output)] = result
        self.write()
        marker_path(Path(result.output)).unlink(missing_ok=True)

    def recover(self, items: Iterable[BatchItem]) -> None:
        """Settle what a killed run left, before this run starts: outputs it moved into place that summary.json
        does not record yet are recorded as done in one attempt (their `Placed` marker says this batch wrote that
        very file; earlier failed attempts are not known), then every batch temporary (.partial-* files and
        folders) in the folders the items write to is removed."""
        folders = {self.out_dir} | {self.output_path(item).parent for item in items}
        found = [entry for folder in folders if folder.is_dir() for entry in folder.iterdir()]
        temporaries = [p for p in found if p.name.startswith(TEMP_PREFIX)]
        recovered = False
        for path in temporaries:
            placed = Placed.read(path) if path.suffix == ".json" and path.is_file() else None
            out = None if placed is None else self.out_dir / placed.output
            if out is not None and marker_path(out) == path and out.is_file() and Placed.digest(out) == placed.sha256:
                self._results[self._key(placed.output)] = ItemResult(placed.input, str(out), DONE, placed.seconds, 1)
                recovered = True
        if recovered:
            self.write()  # the recovered results are safe before their markers go
        for path in temporaries:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)

    def write(self) -> None:
        """Replace summary.json in one step (files.writing): readers never see half a file."""
        items = [r.to_dict() for r in self._results.values()]
        counts = {s: sum(r["status"] == s for r in items) for s in (DONE, FAILED, SKIPPED)}
        text = json.dumps({"state": self.state, "total": len(items), **counts, "items": items}, indent=1)
        with writing(self.path) as (temp,):
            temp.write_text(text + "\n", encoding="utf-8")
