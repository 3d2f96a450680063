"""Training on several processes with torchrun: the process group, each rank's shard of a
batch, and sums reduced across ranks. `torch.distributed` does the work; nothing here
launches or manages processes.

    torchrun --nproc-per-node 2 -m vaekit train --data digits --out runs/ddp

The rules (README, "Several processes and machines"):
- Every rank draws the same seeded permutation of the training rows and cuts it into the same
  global batches of `batch_size` rows; rank r trains on its r-th part of each global batch
  (`World.shard`). DistributedDataParallel averages the gradients, and each rank's mean loss is
  weighted by its share of the batch, so a step equals the single-process step on the whole
  global batch. `--batch-size` is the global batch and `--lr` means what it means in one
  process: changing N changes neither (only the speed). A last global batch with fewer rows
  than ranks is left out of that epoch (at most N-1 rows; the shuffle changes which).
- Each rank draws its own posterior noise, reseeded every epoch from (seed, epoch, rank), so a
  resumed run draws what the uninterrupted one would have.
- Training and validation sums are all-reduced once per epoch; every rank then takes the same
  early-stopping decision. Only rank 0 writes files.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class World:
    """This process's place in the job: rank in 0..size-1; `active` inside a process group."""

    rank: int = 0
    size: int = 1
    active: bool = False

    @property
    def main(self) -> bool:
        """Rank 0: the one that writes files, shows progress and prints."""
        return self.rank == 0

    def batches(self, perm: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
        """The epoch's global batches of row indices (the same on every rank)."""
        batches = list(perm.split(batch_size))
        if self.active and batches and len(batches[-1]) < self.size:
            batches.pop()  # too few rows to give every rank one
        return batches

    def shard(self, idx: torch.Tensor) -> tuple[torch.Tensor, float]:
        """This rank's rows of a global batch, and the weight of its mean loss.

        The parts differ by at most one row; the weight len(part) * size / len(idx) makes the
        average of the ranks' weighted means (what DDP's gradient averaging computes) equal to
        the mean over the whole batch.
        """
        if not self.active:
            return idx, 1.0
        part = idx.tensor_split(self.size)[self.rank]
        return part, len(part) * self.size / len(idx)

    def part(self, n: int) -> torch.Tensor:
        """This rank's contiguous share of rows 0..n-1 (validation is split so)."""
        rows = torch.arange(n)
        return rows.tensor_split(self.size)[self.rank] if self.active else rows

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """t summed over the ranks, in place (unchanged in a single process)."""
        if self.active:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def from_main(self, t: torch.Tensor) -> torch.Tensor:
        """Rank 0's t on every rank, in place (for results computed outside the trainer, like a
        clustering's initial labels, that must agree across ranks)."""
        if self.active:
            dist.broadcast(t, src=0)
        return t

    def noise_seed(self, seed: int, epoch: int) -> int:
        """The posterior-noise seed of this rank for an epoch (distributed runs only)."""
        return (seed * 1_000_003 + epoch) * 4099 + self.rank

    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """The model DistributedDataParallel-wrapped (its forward is the training loss); as it
        is in one process, and in a group of one (torchrun --nproc-per-node 1), where there is
        nothing to average and the wrapper only costs time (the docs' distributed benchmark
        page)."""
        if not self.active or self.size == 1:
            return model
        ids = [device.index or 0] if device.type == "cuda" else None
        # buffers never change during training (the priors' constants): no per-step broadcast
        no_sync = (
            {"forward_sync_buffers": False}
            if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
            else {"broadcast_buffers": False}  # torch before forward_sync_buffers
        )
        # gradients as views into DDP's buckets: no copy of every gradient per step. A static
        # graph: every step of a fit uses the same parameters, though not always all of them
        # (p(y)'s logits while the clustering model observes y), which DDP then allows without
        # searching the graph for unused ones at every step.
        return DistributedDataParallel(
            model, device_ids=ids, gradient_as_bucket_view=True, static_graph=True, **no_sync
        )


def current() -> World:
    """The World of this process: from the process group if one is initialized."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), True)
    return World()


def launched() -> bool:
    """Whether torchrun (or another launcher setting its variables) started this process."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def launched_rank() -> int:
    """This process's rank as the launcher set it (0 when not launched by one)."""
    return int(os.environ["RANK"]) if launched() else 0


def label() -> str:
    """' (rank r/N)' under a launcher, for messages printed by every rank; else ''."""
    if not launched():
        return ""
    return f" (rank {os.environ['RANK']}/{os.environ['WORLD_SIZE']})"


def local_device(name: str | None) -> str | None:
    """Under torchrun each process takes its own GPU: 'auto' and 'cuda' become
    cuda:LOCAL_RANK where torch sees CUDA GPUs; other names are kept."""
    if not launched() or not torch.cuda.is_available():
        return name
    if name in (None, "auto", "cuda"):
        return f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    return name


def start(device: torch.device) -> bool:
    """Join torchrun's process group (nccl on CUDA, gloo on the CPU) when launched by it and
    not already in one; returns whether this call started it (then `stop` ends it)."""
    if not launched() or dist.is_initialized():
        return False
    if not dist.is_available():
        raise RuntimeError("this torch build has no torch.distributed; run without torchrun")
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend)
    return True


def stop(started: bool) -> None:
    """Leave the process group this process started: every rank waits for the others first
    (rank 0 evaluates and draws after training while the rest are done), so no rank tears its
    connections down under another's feet; a rank that is gone already is not waited for."""
    if started and dist.is_initialized():
        with contextlib.suppress(RuntimeError):
            dist.barrier()
        dist.destroy_process_group()
