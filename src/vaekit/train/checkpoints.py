"""Training checkpoints: one safetensors file with the weights, Adam's state and the RNG
states as tensors, and the rest (epoch, history, best, the TrainConfig) as JSON in its header.

Files are device-free: tensors are saved from wherever they live and loaded onto the device
in use; the RNG of that device is restored where the checkpoint has it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vaekit.core.config import to_dict
from vaekit.core.io import CheckpointError, load_tensors, save_tensors
from vaekit.core.model import VAE, load_state
from vaekit.core.utils import device_of
from vaekit.train.config import TrainConfig

FORMAT = "vaekit.checkpoint/1"


def save_checkpoint(
    path: Path,
    model: VAE,
    optimizer: torch.optim.Optimizer,
    shuffle: torch.Generator,
    state: dict[str, Any],
    cfg: TrainConfig,
) -> None:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    for pid, pstate in opt["state"].items():
        for key, value in pstate.items():
            tensors[f"optim.{pid}.{key}"] = torch.as_tensor(value)
    tensors["rng.torch"] = torch.get_rng_state()
    tensors["rng.shuffle"] = shuffle.get_state()
    device = device_of(model)
    if device.type == "cuda":  # the posterior noise is drawn there
        tensors["rng.cuda"] = torch.cuda.get_rng_state(device)
    meta = {
        "format": FORMAT,
        "state": state,
        "param_groups": opt["param_groups"],
        "train": to_dict(cfg),
    }
    save_tensors(path, tensors, meta)


def load_checkpoint(
    path: Path,
    model: VAE,
    optimizer: torch.optim.Optimizer,
    shuffle: torch.Generator,
    device: torch.device,
) -> dict[str, Any]:
    """Restore a checkpoint (written on any device) onto `device`; the RNG of the device in use
    is restored where the checkpoint has it (a run moved from a GPU to the CPU, or back, goes on
    with the CPU's noise as saved, and a fresh stream on the new GPU)."""
    if not path.is_file():
        raise CheckpointError(f"nothing to resume: {path} does not exist; start without --resume")
    tensors, meta = load_tensors(path)
    if meta.get("format") != FORMAT or "state" not in meta:
        raise CheckpointError(f"{path} is not a vaekit training checkpoint")
    weights = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    load_state(model, weights, str(path))
    opt_state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            opt_state.setdefault(int(pid), {})[name] = value
    try:
        optimizer.load_state_dict({"state": opt_state, "param_groups": meta["param_groups"]})
    except (ValueError, KeyError) as e:
        raise CheckpointError(f"{path}: optimizer state does not match the model: {e}") from None
    torch.set_rng_state(tensors["rng.torch"])
    shuffle.set_state(tensors["rng.shuffle"])
    if device.type == "cuda" and "rng.cuda" in tensors:
        torch.cuda.set_rng_state(tensors["rng.cuda"], device)
    state = meta["state"]
    state["history"] = [dict(row) for row in state["history"]]
    return state
