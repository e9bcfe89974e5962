"""Process set-up shared by the tasks: threads, quiet libraries, Lightning pieces."""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import warnings
from typing import Any

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("tfnas")


def available_cores() -> int:
    """CPU cores this process may use (respects affinity masks set by SLURM or taskset)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def retain_freed_memory() -> bool:
    """Let glibc reuse freed tensor memory instead of returning it to the system.

    By default glibc serves large blocks (the per-step states of a batch,
    stacked sequences, Gram inputs: 0.5 to 100 MB each, allocated and freed
    for every architecture) with fresh ``mmap`` pages and unmaps them on
    free, so every allocation page-faults its memory in again. On CPU that
    was 10-20 % of a full RNN scoring pass. With ``mmap`` serving off and the
    heap trimmed only past 1 GiB of free space, freed blocks are reused; the
    process keeps its peak heap. This is the in-process counterpart of
    preloading jemalloc or tcmalloc, as PyTorch's CPU tuning guide suggests.

    Returns:
        True if applied; False where the C library is not glibc (nothing changes).
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30))
    except (OSError, AttributeError):
        return False


def setup_runtime(threads: int | None) -> int:
    """Set torch's intra-op thread count explicitly, reuse freed memory and silence library chatter.

    Args:
        threads: threads for this process; 0 or None means every available core.

    Returns:
        The thread count in force.
    """
    import torch

    n = int(threads) if threads else available_cores()
    torch.set_num_threads(n)
    retain_freed_memory()
    for name in ("lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"lightning(\..*)?")
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*")
    return n


def to_container(node: Any) -> Any:
    """A config node as plain Python (interpolations resolved); other values unchanged."""
    if isinstance(node, DictConfig) or OmegaConf.is_config(node):
        return OmegaConf.to_container(node, resolve=True)
    return node


def make_trainer(trainer_cfg: DictConfig | dict, loggers: list, callbacks: list):
    """The Lightning Trainer of a ``trainer`` config (its ``_target_`` and keyword arguments) with loggers and callbacks.

    Raises:
        ValueError: the config names no ``_target_``.
    """
    from hydra.utils import instantiate

    cfg = to_container(trainer_cfg)
    if "_target_" not in cfg:
        raise ValueError(f"the trainer config has no _target_ (e.g. lightning.pytorch.Trainer): {cfg}")
    return instantiate(cfg, logger=loggers or False, callbacks=callbacks, _convert_="all")


def make_loggers(logger_cfg: DictConfig | dict | None, save_dir: str, name: str, version: str) -> list:
    """The loggers of the ``logger`` config group: none for an empty group (``logger=none``), else its ``_target_``.

    Args:
        logger_cfg: e.g. ``{_target_: lightning.pytorch.loggers.TensorBoardLogger, default_hp_metric: false}``.
        save_dir, name, version: the run directory (TensorBoard: save_dir/name/version), filled in by the task.
    """
    from hydra.utils import instantiate

    cfg = to_container(logger_cfg)
    if not cfg:
        return []
    return [instantiate(cfg, save_dir=save_dir, name=name, version=version, _convert_="all")]
