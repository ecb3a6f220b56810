"""Model files: written atomically, read without trusting them.

:func:`save_npz` writes an ``.npz`` next to its target under a temporary name,
flushes it to disk and renames it over the target, so a crash mid-save leaves
any previous file intact. :func:`read_npz` never unpickles, refuses a member
whose header announces more data than it holds (np.load would allocate it
first), and turns every way a file can be damaged or foreign into a ValueError
naming the file. fastbp.Network's files and the command line's use both.
"""

from __future__ import annotations

import contextlib
import math
import os
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np


def save_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` as an ``.npz``, atomically (see the module docstring)."""
    write_atomically(path, lambda f: np.savez(f, **arrays))


def write_atomically(path: str | os.PathLike, write: Callable[[BinaryIO], Any]) -> None:
    """Create or replace ``path`` with what ``write(file)`` writes, atomically: a
    temporary file next to it, flushed to disk, then renamed over it."""
    path = Path(path)
    mode = file_mode(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp makes the file private (0600): give it the permissions a
        # plain open() would have, or those of the file it replaces.
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_directory(path.parent)


def read_npz(path: str | os.PathLike, what: str = "fastbp model file") -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` at ``path``, in native byte order.

    Raises
    ------
    ValueError
        ``"{path}: not a {what} (why)"`` for a file that is not a safe, whole ``.npz``
        of arrays (truncated, foreign, corrupt, pickled objects, a single ``.npy``).
    OSError
        If it cannot be read at all (missing, a directory, no permission).
    """

    def bad(why: str) -> ValueError:
        return ValueError(f"{path}: not a {what} ({why})")

    # The file is opened here, not by np.load, which leaks its handle when the zip
    # directory is corrupt. open() raises the OSErrors.
    with open(path, "rb") as f:
        try:
            loaded = np.load(f, allow_pickle=False)
            if not isinstance(loaded, np.lib.npyio.NpzFile):
                raise bad("a single .npy array, not an .npz archive")
            with loaded as npz:
                check_member_sizes(npz.zip)
                arrays = {name: npz[name] for name in npz.files}
        except CORRUPT_FILE_ERRORS as exc:
            why = " ".join(str(exc).split())
            if "pickle" in why:  # NumPy's advice to load it unsafely: not for a model
                why = "not a NumPy .npz archive" if "file containing" in why else "Python objects"
            raise bad(why) from None
    for name, arr in arrays.items():
        # npz entries that are not .npy data come back as bytes.
        if not isinstance(arr, np.ndarray):
            raise bad(f"entry {name} is not an array")
        if arr.dtype.kind in "iuf" and not arr.dtype.isnative:  # written on another machine
            arrays[name] = arr.astype(arr.dtype.newbyteorder("="))
    return arrays


def file_mode(path: Path) -> int:
    """Permission bits for a saved file: the existing file's, else 0o666 minus the umask."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        pass
    try:  # Linux >= 4.7 reports the umask without changing it
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (POSIX; a no-op where unsupported)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# What reading a damaged or hostile .npz can raise besides OSError: a corrupt zip
# directory or member, an unsupported or encrypted member, a malformed .npy header.
CORRUPT_FILE_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    EOFError,
    ValueError,
    KeyError,
    NotImplementedError,
    RuntimeError,
    zlib.error,
)


def check_member_sizes(zf: zipfile.ZipFile) -> None:
    """Refuse .npy members whose header announces more data than they hold.

    np.load allocates the announced size before reading, so a few hostile bytes
    could otherwise ask for terabytes.
    """
    fmt = np.lib.format
    for info in zf.infolist():
        with zf.open(info) as member:
            try:
                version = fmt.read_magic(member)
            except ValueError:
                continue  # not .npy data: np.load returns it as bytes, refused later
            read_header = (
                fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            )
            shape, _, dtype = read_header(member)
            needed = math.prod(shape) * dtype.itemsize
            if needed > info.file_size:
                raise ValueError(
                    f"entry {info.filename} announces {needed} bytes but holds {info.file_size}"
                )
