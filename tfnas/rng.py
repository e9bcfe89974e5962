"""The global random number generators: seeding, and their state for checkpoints.

One encoding for every checkpoint: :func:`rng_state` holds only tensors,
numbers, strings and tuples, so checkpoints load with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import random
from typing import Any, Mapping

import numpy as np
import torch


def seed_all(seed: int) -> None:
    """Seed Python's ``random``, NumPy's legacy global generator and torch (CPU and CUDA), in that order."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """The global RNG states: torch, CUDA (when available), NumPy's legacy generator and Python's.

    Returns:
        ``{"torch": ByteTensor, "numpy": (kind, keys as an int64 tensor [624], pos,
        has_gauss, cached_gaussian), "python": random.getstate(), "cuda": [ByteTensor, ...]}``.
    """
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": (str(kind), torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore :func:`rng_state` (the CUDA states only where CUDA is available).

    Also reads checkpoints written before this encoding, whose NumPy state
    holds the key array itself.
    """
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    keys = keys.numpy() if isinstance(keys, torch.Tensor) else np.asarray(keys)
    np.random.set_state((kind, keys.astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
