"""Helpers shared by the benchmarks: interleaved timing and peak memory."""
from __future__ import annotations

import time
from typing import Any, Callable, Optional


def interleaved(repeats: int, *fns: Callable[[], Any]) -> list[float]:
    """Minimum wall time of each function, running them alternately so that load drifting on a
    shared 2-core machine hits all of them alike."""
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for k, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - start)
    return best


def rerun_with_fixed_mmap_threshold(extra_args: list[str]) -> bool:
    """Run this script again, with ``extra_args``, under glibc's mmap threshold fixed at 64 KiB,
    unless this process already runs so (then return False and measure here).

    With the fixed threshold every tensor buffer is mapped on allocation and unmapped when freed,
    so resident memory follows the live tensors. With glibc's default dynamic threshold, freed
    buffers stay in a fragmented heap and the peak tracks the allocation history instead (seen
    here: IG's peak grew from 82 to 146 MiB with more steps at a fixed chunk size; 54 and 59 MiB
    with the fixed threshold). Timings are taken in the same child, so they are comparable with
    each other, not with the IG section's.
    """
    import os
    import subprocess
    import sys

    if os.environ.get("MALLOC_MMAP_THRESHOLD_") is not None or not sys.platform.startswith("linux"):
        return False
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    subprocess.run([sys.executable, *sys.argv, *extra_args], env=env, check=True)
    return True


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_memory_mib(fn: Callable[[], Any]) -> Optional[float]:
    """Peak resident memory that ``fn`` adds above what the process held when it started (MiB).

    Trims glibc's heap and resets the kernel's high-water mark first (``echo 5 > /proc/self/clear_refs``, Linux >= 4.0),
    so several measurements can run in one process. ``None`` where that is not available.
    """
    import ctypes
    import gc

    gc.collect()
    try:
        # Hand freed heap pages back to the OS, or memory freed by earlier work would be reused
        # without showing up as new resident memory.
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        before = _status_kib("VmRSS")
    except (OSError, AttributeError):
        return None
    fn()
    return (_status_kib("VmHWM") - before) / 1024

