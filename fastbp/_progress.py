"""Progress bars (tqdm, imported only when one is shown), shared by the front ends."""

from __future__ import annotations

import sys
from typing import Any


def progress_bar(total: int, unit: str = "epoch") -> Any:
    """A tqdm bar of ``total`` steps on stderr."""
    from tqdm.auto import tqdm

    return tqdm(total=total, unit=unit, leave=True)


def terminal_progress_bar(enabled: bool, total: int, unit: str = "epoch") -> Any:
    """:func:`progress_bar` if ``enabled`` and stderr is a terminal, else None (a bar
    would only litter logs and captured output)."""
    if not enabled or not sys.stderr.isatty():
        return None
    return progress_bar(total, unit)
