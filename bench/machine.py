"""The CPU a benchmark ran on: the report's machine section and the scripts' headers.

Figures from different machines differ by more than any change measured here (the
same digits fit took twice as long per epoch on one AMD EPYC host as on another),
so every table says which CPU it came from.
"""

from __future__ import annotations

import os
import platform


def cpu() -> tuple[str, list[str]]:
    """(model name, SIMD flags starting with avx or fma), from /proc/cpuinfo where it
    exists; the platform's processor name and no flags elsewhere."""
    model = platform.processor() or platform.machine()
    flags: list[str] = []
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model in ("", platform.machine()):
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = [fl for fl in value.split() if fl.startswith(("avx", "fma"))]
    except OSError:
        pass
    return model, flags


def describe() -> str:
    """One line: model, logical cores and SIMD flags (two hosts sold under one model
    name differ in them)."""
    model, flags = cpu()
    return f"{model}, {os.cpu_count()} logical cores, {' '.join(flags) or 'no SIMD flags read'}"
