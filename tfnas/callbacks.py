"""Lightning callbacks: the training-free scores at initialization, keeping them across a resumed training,
and the progress lines of a training."""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Iterable

import lightning.pytorch as pl
import torch

from tfnas.scoring import engine, registry
from tfnas.tasks.progress import format_duration


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


class TrainingProgress(pl.Callback):
    """Progress lines of a training: where it is of how long, the losses, the time per epoch and the time left.

    At the start of fit, one line with the plan (``n epochs of S steps`` or
    ``S steps``, and the point a resumed run starts from). After every
    evaluation, one line::

        [epoch 3 of 50 | 612 s/epoch, 8:10:00 left] train_loss=5.1021 val_loss=5.0312 test_loss=4.9903
        [step 2000 of 40000 | 0.41 s/step, 4:19:40 left] valid_loss=5.8123 test_loss=5.7710 train_loss=5.9034

    (epoch-based when the Trainer has ``max_epochs`` and no ``max_steps``,
    else step-based). The values are the last row of the module's
    ``eval_history`` (ELECTRA pretraining) or ``history`` (the other
    systems): every number in it but ``epoch``, ``step`` and ``seconds``.
    Between evaluations, a line every ``every_seconds`` with the step of
    the epoch, so a long epoch is never silent. The times are measured over
    this run only, from its first step (a resumed run's earlier epochs and
    the evaluation of the untrained model are not counted).

    Args:
        what: what is trained, at the head of each line (``"arch 1"``, ``"rte fine-tuning"``).
        every_seconds: the least seconds between two lines inside an epoch.
        logger_name: the Python logger of the lines.
    """

    def __init__(self, what: str, every_seconds: float = 60.0, logger_name: str = "tfnas.train"):
        self.what, self.every_seconds = what, float(every_seconds)
        self._log = logging.getLogger(logger_name)
        self._t0 = self._last = 0.0
        self._start_epoch = self._start_step = 0

    @staticmethod
    def _by_epoch(trainer: pl.Trainer) -> bool:
        return (trainer.max_steps is None or trainer.max_steps < 0) and (trainer.max_epochs or 0) > 0

    @staticmethod
    def _steps_per_epoch(trainer: pl.Trainer) -> int | None:
        """Lightning's count of training batches, else (a loader without a length) the datamodule's
        ``steps_per_epoch()`` capped by an integer ``limit_train_batches``; None when neither is known."""
        n = trainer.num_training_batches
        if isinstance(n, (int, float)) and math.isfinite(n):
            return int(n)
        dm = getattr(trainer, "datamodule", None)
        if dm is None or not hasattr(dm, "steps_per_epoch"):
            return None
        n = int(dm.steps_per_epoch())
        limit = trainer.limit_train_batches
        return min(n, int(limit)) if isinstance(limit, int) else n

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._t0 == 0.0:  # the clock starts at the first step: evaluating the untrained model is not training
            self._t0 = self._last = time.perf_counter()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._t0 = 0.0
        self._start_epoch, self._start_step = int(trainer.current_epoch), int(trainer.global_step)
        per_epoch = self._steps_per_epoch(trainer)
        if self._by_epoch(trainer):
            plan = f"{trainer.max_epochs} epoch(s)" + (f" of {per_epoch} steps" if per_epoch else "")
            at = f", resuming after epoch {self._start_epoch}" if self._start_epoch else ""
        else:
            plan = f"{trainer.max_steps} steps" + (f" ({per_epoch} per pass over the data)" if per_epoch else "")
            at = f", resuming at step {self._start_step}" if self._start_step else ""
        self._log.info(f"{self.what}: {plan}{at}")

    def _where(self, trainer: pl.Trainer, finished_epoch: bool) -> str:
        """``[epoch k of n | t s/epoch, T left]`` or ``[step s of S | t s/step, T left]``."""
        elapsed = time.perf_counter() - self._t0
        if self._by_epoch(trainer):
            n = int(trainer.max_epochs)
            per_epoch = self._steps_per_epoch(trainer)
            # Epochs of this run so far, the current one counted by its share of steps done.
            epoch = int(trainer.current_epoch) + (1 if finished_epoch else 0)
            done = epoch - self._start_epoch
            if not finished_epoch and per_epoch:
                done += min(1.0, (trainer.fit_loop.epoch_loop.batch_progress.current.ready or 0) / per_epoch)
            per = elapsed / done if done > 0 else math.nan
            head = f"epoch {epoch} of {n}" if finished_epoch else (
                f"epoch {epoch + 1} of {n}, step {trainer.fit_loop.epoch_loop.batch_progress.current.ready}"
                + (f" of {per_epoch}" if per_epoch else ""))
            left = per * (n - self._start_epoch - done) if done > 0 else math.nan
            return f"[{head} | {'-' if math.isnan(per) else f'{per:.0f}'} s/epoch, {format_duration(left)} left]"
        n, step = int(trainer.max_steps), int(trainer.global_step)
        per = elapsed / (step - self._start_step) if step > self._start_step else math.nan
        left = per * (n - step) if step > self._start_step else math.nan
        return f"[step {step} of {n} | {'-' if math.isnan(per) else f'{per:.2f}'} s/step, {format_duration(left)} left]"

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        now = time.perf_counter()
        if now - self._last >= self.every_seconds:
            self._last = now
            self._log.info(f"{self._where(trainer, finished_epoch=False)} {self.what}: training")

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self._last = time.perf_counter()
        rows = getattr(pl_module, "eval_history", None) or getattr(pl_module, "history", None) or [{}]
        shown = " ".join(f"{k}={v:.4f}" for k, v in rows[-1].items()
                         if k not in ("epoch", "step", "seconds") and isinstance(v, (int, float)))
        # Lightning evaluates at the end of an epoch before counting it as finished.
        finished = self._by_epoch(trainer)
        self._log.info(f"{self._where(trainer, finished_epoch=finished)} {self.what}: {shown}")
