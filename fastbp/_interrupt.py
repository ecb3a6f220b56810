"""Ctrl-C while the main thread is inside compiled code.

Python runs its SIGINT handler only between bytecodes, so a KeyboardInterrupt waits
for the compiled chunk to return. Chunks aim at 0.1 s, but on a machine whose cores
are suddenly taken by other processes one can stretch to seconds. So during a long
fit in the main thread, :func:`watch` routes SIGINT through ``signal.set_wakeup_fd``
(written by the C-level handler the moment the signal arrives) to a small thread
that raises a flag; the compiled loop checks the flag after every step and returns
early. Python's handler then raises KeyboardInterrupt as usual.

Nothing is installed when fit runs outside the main thread, when a wakeup fd is
already in use (an asyncio loop, for instance), or when SIGINT is not handled by
Python's default handler.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator

import numpy as np


@contextlib.contextmanager
def watch(flag: np.ndarray) -> Iterator[None]:
    """Set ``flag[0] = 1`` as soon as SIGINT arrives, for the duration of the body."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    try:
        previous = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    except ValueError:  # not the main thread of the main interpreter
        os.close(read_fd)
        os.close(write_fd)
        yield
        return
    if previous != -1:  # someone else's wakeup fd: leave it alone
        signal.set_wakeup_fd(previous)
        os.close(read_fd)
        os.close(write_fd)
        yield
        return

    def wait() -> None:
        # Reads end (empty) when the write end is closed at the end of the body.
        while data := os.read(read_fd, 64):
            if signal.SIGINT in data:
                flag[0] = 1

    watcher = threading.Thread(target=wait, name="fastbp-sigint", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(-1)
        os.close(write_fd)
        watcher.join()
        os.close(read_fd)
