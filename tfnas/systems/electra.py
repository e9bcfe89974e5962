"""ELECTRA pretraining of a FlexiBERT discriminator: the optimisation and the Lightning system.

The network (generator, discriminator, masking, corruption, losses) is
:mod:`tfnas.models.electra`.

Optimisation (ELECTRA's ``optimization.py``): AdamW (β = 0.9, 0.999, ε = 1e-6,
decoupled weight decay 0.01 on every weight but biases and LayerNorm
parameters), lr 5e-4, 10,000 linear warm-up steps then linear decay to 0 at
100,000 steps (``transformers.get_linear_schedule_with_warmup``), gradient
norm clipped at 1 (set on the Trainer). Two documented differences from the
TF code: torch's AdamW applies Adam's bias correction (ELECTRA's
``AdamWeightDecayOptimizer`` does not), and ELECTRA's schedule multiplies a
decay that starts at step 0 by the warm-up ramp (peak 0.9·lr at 10 k steps);
``schedule="electra"`` reproduces that shape instead.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from tfnas.models.electra import ElectraOutput, ElectraPretrainingModel
from tfnas.models.flexibert import FlexiBertModel
from tfnas.systems.base import ResumableSystem
from tfnas.systems.common import TrainingDiverged

log = logging.getLogger("tfnas.train")

#: Learning-rate schedules of :func:`make_scheduler`.
SCHEDULES = ("linear", "electra")


# ---------------------------------------------------------------------------- optimisation helpers
def no_decay(name: str) -> bool:
    """Whether parameter ``name`` is exempt from weight decay (biases and LayerNorm, as ELECTRA/BERT)."""
    return name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name


def decay_param_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: decayed weights and the exempt biases / LayerNorm parameters.

    Shared parameters (the tied embeddings) appear once.
    """
    decay, exempt = [], []
    for name, p in module.named_parameters():  # named_parameters de-duplicates shared tensors
        if p.requires_grad:
            (exempt if no_decay(name) else decay).append(p)
    return [
        {"params": decay, "weight_decay": float(weight_decay), "name": "decay"},
        {"params": exempt, "weight_decay": 0.0, "name": "no_decay"},
    ]


def make_scheduler(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, kind: str = "linear"):
    """The per-step learning-rate schedule.

    Args:
        optimizer: its groups' ``lr`` are the peak rates.
        warmup_steps: linear warm-up from 0.
        total_steps: the rate reaches 0 here.
        kind: ``"linear"`` — warm-up, then linear decay from the peak to 0
            (``transformers.get_linear_schedule_with_warmup``); ``"electra"`` —
            ELECTRA's ``(1 − t/T) · min(1, t/W)``.

    Raises:
        ValueError: unknown ``kind`` or non-positive ``total_steps``.
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if kind == "linear":
        from transformers import get_linear_schedule_with_warmup

        return get_linear_schedule_with_warmup(optimizer, int(warmup_steps), int(total_steps))
    if kind == "electra":
        w, t_max = max(int(warmup_steps), 1), int(total_steps)
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda t: max(0.0, 1.0 - t / t_max) * min(1.0, t / w)
        )
    raise ValueError(f"unknown schedule {kind!r}; expected one of {SCHEDULES}")


# ---------------------------------------------------------------------------- Lightning system
class ElectraPretrainingSystem(ResumableSystem):
    """Trains an :class:`ElectraPretrainingModel` with ELECTRA's recipe.

    Batches are dicts with ``input_ids`` [B, S] and optionally
    ``attention_mask`` and ``token_type_ids``
    (:class:`tfnas.data.pretraining.PretrainingDataModule`).

    Logged (every ``log_every_n_steps`` of the Trainer): ``pretrain/loss``,
    ``pretrain/mlm_loss`` (generator), ``pretrain/disc_loss``,
    ``pretrain/mlm_acc`` (argmax accuracy at the masked positions),
    ``pretrain/disc_acc``, ``pretrain/replaced`` (share of real tokens
    replaced), ``pretrain/lr``. When the datamodule has a validation loader,
    the same losses on it with a fixed masking/sampling seed as ``pval/...``,
    also once before training (step 0) when a fresh run starts. A resumed
    run continues the interrupted run's random stream
    (:class:`~tfnas.systems.base.ResumableSystem`).

    Args:
        model: the generator + discriminator.
        lr: peak learning rate (5e-4).
        weight_decay: decoupled weight decay (0.01).
        warmup_steps: linear warm-up (10,000).
        max_steps: total optimisation steps (100,000); the schedule ends here.
        adam_eps, adam_betas: AdamW settings (1e-6, (0.9, 0.999)).
        schedule: ``"linear"`` or ``"electra"`` (see :func:`make_scheduler`).
        seed: seeds torch, NumPy and Python when a fresh run starts training
            (after the training-free scores, whatever RNG they used).
        eval_seed: seed of the validation masking and sampling.
        history_every: append the mean training losses of each window of
            this many steps to :attr:`history`.

    Attributes:
        model: the discriminator (what :class:`~tfnas.callbacks.TrainingFreeScores` scores).
        history: ``{"step", "loss", "mlm_loss", "disc_loss", "mlm_acc", "disc_acc"}``
            window means of the training losses.
        eval_history: ``{"step", "loss", "mlm_loss", "disc_loss", ...}`` per validation.
    """

    CHECKPOINT_KIND = "ELECTRA"

    def __init__(
        self,
        model: ElectraPretrainingModel,
        lr: float = 5e-4,
        weight_decay: float = 0.01,
        warmup_steps: int = 10_000,
        max_steps: int = 100_000,
        adam_eps: float = 1e-6,
        adam_betas: tuple[float, float] = (0.9, 0.999),
        schedule: str = "linear",
        seed: int = 0,
        eval_seed: int = 1234,
        history_every: int = 50,
    ):
        super().__init__(seed)
        if lr <= 0 or max_steps < 1 or warmup_steps < 0:
            raise ValueError(f"need lr > 0, max_steps >= 1, warmup_steps >= 0; got {lr}, {max_steps}, {warmup_steps}")
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r}; expected one of {SCHEDULES}")
        self.electra = model
        self.lr, self.weight_decay = float(lr), float(weight_decay)
        self.warmup_steps, self.max_steps = int(warmup_steps), int(max_steps)
        self.adam_eps, self.adam_betas = float(adam_eps), tuple(float(b) for b in adam_betas)
        self.schedule, self.eval_seed = schedule, int(eval_seed)
        self.history_every = max(1, int(history_every))
        self.history: list[dict[str, float]] = []
        self.eval_history: list[dict[str, float]] = []
        self._window: list[list[float]] = []
        self._eval_acc: list[list[float]] = []
        self._t0 = time.perf_counter()

    @property
    def model(self) -> FlexiBertModel:
        """The discriminator (the architecture being trained)."""
        return self.electra.discriminator

    # -------------------------------------------------------------- optimisation
    def configure_optimizers(self):
        opt = torch.optim.AdamW(
            decay_param_groups(self.electra, self.weight_decay), lr=self.lr, betas=self.adam_betas, eps=self.adam_eps
        )
        sched = make_scheduler(opt, self.warmup_steps, self.max_steps, self.schedule)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "frequency": 1}}

    def _evaluate_before_training(self) -> None:
        if self.global_step == 0 and not self.eval_history:
            self._evaluate_now()

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        """One ELECTRA step.

        Raises:
            TrainingDiverged: the loss is NaN or infinite.
        """
        out = self.electra(batch["input_ids"], batch.get("attention_mask"), batch.get("token_type_ids"))
        if not torch.isfinite(out.loss):
            raise TrainingDiverged(
                f"pretraining loss is {out.loss.item()} at step {self.global_step} "
                f"(mlm {out.mlm_loss.item()}, disc {out.disc_loss.item()})"
            )
        stats = _step_stats(out, batch.get("attention_mask"))
        self.log_dict({f"pretrain/{k}": v for k, v in stats.items()}, on_step=True, on_epoch=False)
        self.log("pretrain/lr", self.lr_schedulers().get_last_lr()[0], on_step=True, on_epoch=False)
        self._window.append([stats[k] for k in _STAT_KEYS])
        if len(self._window) >= self.history_every:
            self._flush_window()
        return out.loss

    def _flush_window(self) -> None:
        if not self._window:
            return
        means = np.mean(np.asarray(self._window, dtype=np.float64), axis=0)
        row = {"step": int(self.global_step) + 1, **{k: float(v) for k, v in zip(_STAT_KEYS, means)},
               "seconds": time.perf_counter() - self._t0}
        self.history.append(row)
        self._window = []
        log.info(
            f"pretrain step {row['step']}: loss={row['loss']:.4f} mlm={row['mlm_loss']:.4f} "
            f"disc={row['disc_loss']:.4f} disc_acc={row['disc_acc']:.3f}"
        )

    def on_train_end(self) -> None:
        self._flush_window()

    # -------------------------------------------------------------- evaluation
    def on_validation_epoch_start(self) -> None:
        self._eval_acc = []
        self._eval_gen = torch.Generator(device=self.device).manual_seed(self.eval_seed)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        out = self.electra(batch["input_ids"], batch.get("attention_mask"), batch.get("token_type_ids"),
                           generator=self._eval_gen)
        stats = _step_stats(out, batch.get("attention_mask"))
        self._eval_acc.append([stats[k] for k in _STAT_KEYS])

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking or not self._eval_acc:
            return
        self._record_eval(int(self.global_step))

    def _record_eval(self, step: int) -> None:
        means = np.mean(np.asarray(self._eval_acc, dtype=np.float64), axis=0)
        row = {"step": step, **{k: float(v) for k, v in zip(_STAT_KEYS, means)}}
        self.eval_history.append(row)
        for lg in self.trainer.loggers:
            lg.log_metrics({f"pval/{k}": row[k] for k in _STAT_KEYS}, step=step)
        log.info(f"pretrain eval at step {step}: mlm={row['mlm_loss']:.4f} disc={row['disc_loss']:.4f}")

    @torch.no_grad()
    def _evaluate_now(self) -> None:
        """Validation losses of the model as it is (before training), honouring ``limit_val_batches``."""
        dm = self.trainer.datamodule
        if dm is None or not getattr(dm, "has_validation", False):
            return
        loader = dm.val_dataloader()
        limit = self.trainer.limit_val_batches
        was = self.electra.training
        self.electra.eval()
        self.on_validation_epoch_start()
        try:
            for k, batch in enumerate(loader):
                if isinstance(limit, int) and k >= limit:
                    break
                batch = {key: v.to(self.device) for key, v in batch.items()}
                self.validation_step(batch, k)
        finally:
            self.electra.train(was)
        if self._eval_acc:
            self._record_eval(0)

    # -------------------------------------------------------------- checkpoints
    def _checkpoint_state(self) -> dict[str, Any]:
        return {"history": list(self.history), "eval_history": list(self.eval_history), "window": list(self._window)}

    def _restore_checkpoint_state(self, state: dict[str, Any]) -> None:
        self.history = list(state["history"])
        self.eval_history = list(state["eval_history"])
        self._window = list(state.get("window", []))


_STAT_KEYS = ("loss", "mlm_loss", "disc_loss", "mlm_acc", "disc_acc", "replaced")


def _step_stats(out: ElectraOutput, attention_mask: Tensor | None) -> dict[str, float]:
    with torch.no_grad():
        real = torch.ones_like(out.labels, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
        pred = out.disc_logits > 0
        disc_acc = (pred == out.labels.bool())[real].float().mean()
        hits = (out.mlm_logits.argmax(-1) == out.targets).float()
        mlm_acc = hits.mean() if hits.numel() else torch.tensor(math.nan)
        return {
            "loss": float(out.loss),
            "mlm_loss": float(out.mlm_loss),
            "disc_loss": float(out.disc_loss),
            "mlm_acc": float(mlm_acc),
            "disc_acc": float(disc_acc),
            "replaced": float(out.labels[real].mean()),
        }
