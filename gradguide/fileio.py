"""Writing files safely: atomic replace, the umask's mode, no silent overwrite, clear OS errors.

Every file gradguide writes (images, checkpoints, training state) goes through
:func:`atomic_write`: the bytes go to a temporary file beside the destination, which is
given the mode an ordinary ``open()`` would give (``0o666`` minus the umask, not
``mkstemp``'s ``0o600``), flushed, ``fsync``-ed and renamed over the destination. A crash
at any point leaves either the old file or the new one, never a mix. With
``overwrite=False`` the final step is a hard link, which fails if the destination
appeared in the meantime, so two writers can never replace each other's file.

Temporary files are named ``.<name>.<random>.tmp``; :func:`clean_stale_tmp` removes those
a killed process left behind.
"""
from __future__ import annotations

import errno
import os
import re
import stat
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Iterable, Union

__all__ = [
    "atomic_write",
    "default_file_mode",
    "clean_stale_tmp",
    "tmp_pattern",
    "os_reason",
    "one_line",
    "FATAL_WRITE_ERRNOS",
    "check_input_file",
]

PathLike = Union[str, os.PathLike]

#: errors after which no further file can be written to the same folder (a batch stops)
FATAL_WRITE_ERRNOS = frozenset(
    e for e in (errno.ENOSPC, getattr(errno, "EDQUOT", None), errno.EROFS, errno.EACCES, errno.EPERM) if e is not None
)

_umask_lock = threading.Lock()
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-_]")


def default_file_mode() -> int:
    """``0o666 & ~umask``: the mode ``open(path, "w")`` would create a file with."""
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


def one_line(text: Any, limit: int = 300) -> str:
    """``text`` on one line: ANSI escape codes removed, whitespace runs collapsed, other
    control characters shown escaped (``\\x1b``), cut at ``limit``."""
    s = " ".join(_ANSI.sub("", str(text)).split())
    s = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in s)
    return s if len(s) <= limit else s[: limit - 3].rstrip() + "..."


def os_reason(exc: BaseException) -> str:
    """An OS error's reason without the ``[Errno N]`` prefix or file names:
    ``"No space left on device"``, ``"Permission denied"``."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return one_line(exc) or type(exc).__name__


def tmp_pattern(name: str) -> str:
    """The glob matching temporary files :func:`atomic_write` makes for ``name``."""
    return f".{name}.*.tmp"


def atomic_write(
    path: PathLike,
    write: Callable[[Any], None],
    *,
    overwrite: bool = True,
    fsync: bool = True,
    mode: int | None = None,
) -> Path:
    """Call ``write(fileobj)`` on a temporary file beside ``path`` and move it into place.

    Args:
        path: destination; its parent folder must exist.
        write: writes the content to the binary file object it is given.
        overwrite: replace an existing ``path``; with ``False`` an existing file is left
            as it is and :class:`FileExistsError` is raised (also when another process
            created it while we were writing).
        fsync: flush the file and the folder to disk (durable across power loss).
        mode: file mode; default :func:`default_file_mode` (the umask's).

    On any error the temporary file is removed and ``path`` is untouched.
    """
    p = Path(path)
    if not overwrite and os.path.lexists(p):
        raise FileExistsError(errno.EEXIST, "File exists", str(p))
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=str(p.parent))
    except OSError as exc:  # name the destination, not the hidden temporary file
        raise type(exc)(exc.errno, exc.strerror or str(exc), str(p)) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), default_file_mode() if mode is None else mode)
            write(fh)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        if overwrite:
            os.replace(tmp, p)
        else:
            try:
                os.link(tmp, p)  # fails with EEXIST if p appeared meanwhile: never replaces it
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.EXDEV):
                    raise
                if os.path.lexists(p):  # a filesystem without hard links: check, then rename
                    raise FileExistsError(errno.EEXIST, "File exists", str(p)) from None
                os.replace(tmp, p)
            else:
                os.unlink(tmp)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError) and exc.errno is not None and exc.filename in (None, tmp):
            raise type(exc)(exc.errno, exc.strerror or str(exc), str(p)) from None  # name the destination
        raise
    if fsync:
        _fsync_dir(p.parent)
    return p


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse fsync on dirs
        pass
    finally:
        os.close(fd)


def clean_stale_tmp(folder: PathLike, names: Iterable[str] | None = None) -> list[Path]:
    """Remove temporary files a killed write left in ``folder`` (for ``names``, or all)."""
    d = Path(folder)
    if not d.is_dir():
        return []
    patterns = [tmp_pattern(n) for n in names] if names is not None else [".*.tmp"]
    removed = []
    for pat in patterns:
        for f in d.glob(pat):
            if f.is_file():
                try:
                    f.unlink()
                    removed.append(f)
                except OSError:
                    pass
    return removed


def check_input_file(p: Path, error: type = OSError) -> None:
    """Raise ``error`` with one line naming ``p`` unless it is a readable regular file:
    missing, a dangling link, a symbolic link loop, a folder, a device."""
    try:
        st = os.stat(p)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise error(f"{p}: symbolic link loop") from None
        if exc.errno == errno.ENOENT:
            if os.path.islink(p):
                raise error(f"{p}: broken symbolic link (its target {os.readlink(p)} does not exist)") from None
            raise error(f"{p}: no such file") from None
        raise error(f"{p}: cannot read ({exc.strerror or type(exc).__name__})") from None
    if stat.S_ISDIR(st.st_mode):
        raise error(f"{p}: is a folder, expected a file")
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{p}: not a regular file")
