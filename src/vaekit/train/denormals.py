"""Flush denormal floats to zero in every CPU thread torch computes on.

Why: values below ~1.2e-38 (e.g. Adam's first moment of a weight that never gets gradient,
decaying by 0.9 a step) take a slow path on x86; CPU epochs get 1.5-2x slower after ~800
steps. `torch.set_flush_denormal(True)` fixes that only for the calling thread: the flag
lives in each thread's MXCSR register, and torch's intra-op (OpenMP) workers keep theirs, so
half the work of a 2-thread parallel op still sees denormals. Here the flag is also set inside
one OpenMP parallel region of torch's own libgomp, which reaches every pool thread (threads
created later inherit it from the creating thread).
"""

from __future__ import annotations

import ctypes
import functools
import os
from typing import Any

import torch

_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


@functools.lru_cache(maxsize=1)
def _torch_gomp() -> Any:
    """torch's OpenMP runtime (a ctypes handle), or None (macOS, TBB builds, no /proc).

    Other packages ship their own libgomp (scikit-learn does), each with its own thread pool:
    take the copy inside torch's package, else a single system one, else give up.
    """
    try:
        with open("/proc/self/maps") as f:
            paths = sorted({line.split()[-1] for line in f if "libgomp" in line})
        torch_dir = os.path.dirname(torch.__file__) + os.sep
        own = [p for p in paths if p.startswith(torch_dir)]
        if own:
            path = own[0]
        elif len(paths) == 1 and "site-packages" not in paths[0]:
            path = paths[0]  # torch linked against the system libgomp
        else:
            return None
        lib = ctypes.CDLL(path)  # already loaded by torch: the same instance
        lib.GOMP_parallel.argtypes = [_CALLBACK, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
        lib.GOMP_parallel.restype = None
        return lib
    except (OSError, AttributeError):
        return None


def is_flushing() -> bool:
    """Whether denormals are flushed in the calling thread (a denormal times 1 gives 0)."""
    return bool(torch.tensor(1e-40) * 1.0 == 0)


def set_flush_denormal(on: bool) -> bool:
    """Flush denormals to zero (on=True) or keep them, in the calling thread and in every
    thread of torch's OpenMP pool. Returns False where the CPU does not support it."""
    if not torch.set_flush_denormal(on):
        return False
    lib = _torch_gomp()
    if lib is not None and torch.get_num_threads() > 1:
        body = _CALLBACK(lambda _: torch.set_flush_denormal(on))
        lib.GOMP_parallel(body, None, torch.get_num_threads(), 0)
    return True
