"""The bounded pool the explorer's model work runs in.

The endpoints that touch the model (decode, encode, sample, interpolate, scatter, manifold) run
in a fixed pool of `workers` threads, not in the web framework's thread pool (up to 40 threads,
one per concurrent request): each thread that runs the model gets its own malloc arena (and,
with several torch threads, its own OpenMP team), so a pool that grows with the load grows
the process's memory with it and does not give it back. At most `max_jobs`
requests wait or run; beyond that a request is answered 503 at once (with Retry-After), so the
requests held in memory stay bounded however many clients send them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from fastapi import HTTPException

T = TypeVar("T")


class WorkPool:
    """`workers` threads for the model work, and at most `max_jobs` requests in it at once."""

    def __init__(self, workers: int = 2, max_jobs: int = 64) -> None:
        if workers < 1 or max_jobs < workers:
            raise ValueError(f"need 1 <= workers <= max_jobs, got {workers} and {max_jobs}")
        self.workers = workers
        self.max_jobs = max_jobs
        self.jobs = 0  # changed on the event loop's thread only
        self.executor = ThreadPoolExecutor(workers, thread_name_prefix="vaekit-serve")

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """fn(*args) in the pool; 503 when `max_jobs` requests are already in it."""
        if self.jobs >= self.max_jobs:
            raise HTTPException(
                503,
                f"the server is busy ({self.jobs} requests in hand); try again in a moment",
                headers={"Retry-After": "1"},
            )
        self.jobs += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)
        finally:
            self.jobs -= 1

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
