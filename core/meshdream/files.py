"""Writing output files so that a failure (a full disk, a kill) never leaves a broken file under the final name:
each file is written under a temporary name beside it and renamed into place in one step. Stdlib only."""

from __future__ import annotations

import errno
import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import MeshDreamError, OutputWriteError

# How every half-written file or folder MeshDream may leave behind is named (a batch removes its own at start).
TEMP_PREFIX = ".partial-"

_FIXES = {
    errno.ENOSPC: "free some space or write to another disk",
    errno.EFBIG: "the file is larger than this file system (or a size limit) allows; write to another disk",
    errno.EACCES: "check its permissions, or write to a folder you may write to",
    errno.EPERM: "check its permissions, or write to a folder you may write to",
    errno.EROFS: "the disk is read-only; write to another one",
}


def os_error_message(exc: OSError) -> str:
    """One line for the user: the file, the system's reason and what to do about it."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    where = f"'{exc.filename}': " if exc.filename else ""
    return f"{where}{reason}; {_FIXES.get(exc.errno, 'check the path and try again')}."


@contextmanager
def writing(*paths: str | os.PathLike) -> Iterator[tuple[Path, ...]]:
    """Temporary paths beside `paths` for the caller to write. When the block ends normally each is synced to disk
    and renamed onto its path in the order given (put a file that refers to the others last), so a file under a
    final name is always complete. On any failure the temporaries are removed and the final paths are untouched;
    an OSError becomes an OutputWriteError that names the output, the reason and the fix."""
    finals = [Path(os.fspath(p)) for p in paths]
    temps: list[Path] = []
    try:
        for final in finals:
            final.parent.mkdir(parents=True, exist_ok=True)
            temp = final.with_name(f"{TEMP_PREFIX}{secrets.token_hex(8)}-{final.name[-100:]}")
            os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # the umask decides the mode
            temps.append(temp)
        yield tuple(temps)
        for temp in temps:
            fd = os.open(temp, os.O_RDWR)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        for final, temp in zip(finals, list(temps)):
            os.replace(temp, final)
            temps.remove(temp)
    except BaseException as exc:
        for temp in temps:
            temp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, MeshDreamError):
            beside = f" (and {len(finals) - 1} files beside it)" if len(finals) > 1 else ""
            reason = os_error_message(_unnamed(exc))
            raise OutputWriteError(f"Could not write '{finals[-1]}'{beside}: {reason}") from exc
        raise


def _unnamed(exc: OSError) -> OSError:
    """The error without its file name (a temporary's, which the user never asked for)."""
    return OSError(exc.errno, exc.strerror or str(exc))
