"""Where a model runs: a user's device name to a `torch.device`, the rule for keeping the
training data on it.

Names: ``auto`` (CUDA where torch sees a GPU, else MPS where torch reports it, else the CPU),
``cpu``, ``cuda``, ``cuda:N``, ``mps``. A device that is not there is a one-line
`DeviceError`, never a traceback from deep inside torch. Files never depend on the device:
tensors are saved from the CPU and loaded onto it, then moved.
"""

from __future__ import annotations

import torch

NAMES = "auto, cpu, cuda, cuda:N or mps"
# A split is kept whole on a GPU when it takes at most this share of the memory free there:
# the rest is for the model, its optimizer state and the activations of a batch.
RESIDENT_SHARE = 0.5


class DeviceError(ValueError):
    """The device asked for does not exist here, or is not a device name."""


def mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """The torch.device for a name (see the module docstring); None means auto."""
    text = "auto" if name is None else str(name).strip()
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise DeviceError(f"device {text!r} is not a device name; use {NAMES}") from None
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device {text!r}: torch sees no CUDA GPU here (a CPU-only build of torch, or "
                "no driver); use --device cpu or auto"
            )
        count, index = torch.cuda.device_count(), device.index or 0
        if index >= count:
            raise DeviceError(
                f"device {text!r}: this machine has {count} CUDA GPU(s), cuda:0 to "
                f"cuda:{count - 1}; pick one of those"
            )
        return torch.device("cuda", index)
    if device.type == "mps":
        if not mps_available():
            raise DeviceError(f"device {text!r}: torch reports no MPS (Apple GPU) here; use cpu")
        return device
    raise DeviceError(f"device {text!r}: vaekit runs on the CPU, CUDA or MPS; use {NAMES}")


def describe(device: torch.device) -> str:
    """'cpu', 'cuda:0 (NVIDIA H100 80GB HBM3)', 'mps': for the run's log."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def fits_on(device: torch.device, nbytes: int) -> bool:
    """Whether data of nbytes may live on `device` for the whole of training (the rule:
    the CPU always; CUDA when it takes at most RESIDENT_SHARE of the free memory; MPS shares
    the host's memory, so always)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return nbytes <= RESIDENT_SHARE * free
    return True
