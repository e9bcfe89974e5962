"""Lightning callbacks: the training-free scores at initialization, and keeping them across a resumed training."""

from __future__ import annotations

from typing import Any, Iterable

import lightning.pytorch as pl
import torch

from tfnas.scoring import engine, registry


def move_batch(batch: Any, device: torch.device) -> Any:
    """The scoring batch (tensor, tuple/list or dict of tensors) on ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: move_batch(v, device) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(move_batch(v, device) for v in batch)
    return batch


class TrainingFreeScores(pl.Callback):
    """Scores the untrained network once, at the start of fit, before any optimizer step.

    The wrapped network is read from ``pl_module.model``; it is scored in eval
    mode on the scoring minibatch with autograd enabled (Lightning may run
    hooks under ``torch.inference_mode``; the engine lifts it), then its mode
    is restored. Scores go to every logger of the trainer under
    ``score/<name>`` at step ``log_step``, and are kept in :attr:`result`.
    The device the module was on is kept in :attr:`device` (``"cpu"``,
    ``"cuda:0"``), and on a CUDA device the peak memory allocated by torch
    while scoring, in bytes (``torch.cuda.max_memory_allocated`` after a
    reset, so the model's own weights count), in :attr:`peak_memory`.

    Args:
        family: the network's model family, ``"rnn"`` or ``"bert"`` (a space's ``family``).
        batch: the scoring minibatch (moved to the module's device).
        metrics: metric names of the family, each giving one or more scores (see
            :func:`tfnas.scoring.registry.available`).
        seed: seed for passes that draw noise.
        paper_compat: reproduce the published columns.
        log_step: the step to log at (the sweep logs the arch index, so one
            TensorBoard run plots every architecture's score).
    """

    def __init__(
        self,
        family: str,
        batch: Any,
        metrics: Iterable[str],
        seed: int = 0,
        paper_compat: bool = False,
        log_step: int = 0,
    ):
        super().__init__()
        self.family, self.batch, self.metrics = family, batch, list(metrics)
        self.seed, self.paper_compat, self.log_step = seed, paper_compat, log_step
        self.result: engine.ScoreResult | None = None
        self.device: str | None = None
        self.peak_memory: int | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if not isinstance(getattr(pl_module, "model", None), torch.nn.Module):
            raise TypeError("TrainingFreeScores needs a LightningModule with the network as `.model`")
        registry.get(self.family, self.metrics)  # unknown names fail before any work

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        device = pl_module.device
        self.device = str(device)
        cuda = device.type == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        batch = move_batch(self.batch, device)
        self.result = engine.score(
            self.family, pl_module.model, batch, self.metrics, seed=self.seed, paper_compat=self.paper_compat
        )
        if cuda:
            self.peak_memory = int(torch.cuda.max_memory_allocated(device))
        for logger in trainer.loggers:
            logger.log_metrics({f"score/{k}": v for k, v in self.result.scores.items()}, step=self.log_step)


class InitialScores(pl.Callback):
    """Keeps the training-free scores of the untrained model in every checkpoint of a training.

    A resumed training starts from trained weights, so its scores at
    initialization can only come from the checkpoint: this callback writes
    them into each checkpoint and reads them back on resume.

    Args:
        scorer: the run's :class:`TrainingFreeScores`, or None for a resumed
            run (its scores come from the checkpoint).
    """

    def __init__(self, scorer: TrainingFreeScores | None):
        self.scorer = scorer
        self.restored: dict[str, Any] | None = None

    def result(self) -> dict[str, Any] | None:
        """``{"scores", "reasons", "seconds"}`` of the untrained model, or None."""
        if self.scorer is not None and self.scorer.result is not None:
            r = self.scorer.result
            return {"scores": dict(r.scores), "reasons": dict(r.reasons), "seconds": float(r.seconds)}
        return self.restored

    def state_dict(self) -> dict[str, Any]:
        return self.result() or {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.restored = dict(state_dict) if state_dict else None
