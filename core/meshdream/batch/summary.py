"""summary.json: the batch's record, rewritten atomically after every item so a crash or Ctrl-C loses nothing
that finished, and the next run knows what to skip. Any scheduler (in-process, Ray) records through `Summary`."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Optional

from ..errors import InvalidParameterError
from .jobs import DONE, FAILED, SKIPPED, BatchItem, ItemResult

SUMMARY = "summary.json"
RUNNING, FINISHED, CANCELLED = "running", "finished", "cancelled"


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
        self._results[self._key(result.output)] = result
        self.write()

    def write(self) -> None:
        """Replace summary.json in one step (temp file + os.replace): readers never see half a file."""
        items = [r.to_dict() for r in self._results.values()]
        counts = {s: sum(r["status"] == s for r in items) for s in (DONE, FAILED, SKIPPED)}
        text = json.dumps({"state": self.state, "total": len(items), **counts, "items": items}, indent=1)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".summary-", suffix=".json.tmp", dir=self.out_dir)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the summary from other users of a shared folder
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
