"""The Lightning system that trains an LTS GPT-2 decoder as a causal language model.

Protocol (LTS, archai ``neurips-lts``: ``archai/nlp/train.py`` defaults and
``wt103_base.yaml``; the published random GPT-2 architectures were trained
with it):

- LAMB (You et al. 2020) with lr 0.01, no weight decay, no bias correction,
  the weight norm clamped at 10 (``torch_optimizer.Lamb``, the algorithm of
  archai's ``JITLamb``); ``optimizer="adam"`` for Adam instead;
- the learning rate rises linearly over ``warmup_steps`` (1,000), then
  follows a cosine from lr down to ``eta_min`` (0.001) at ``max_steps``
  (40,000);
- gradient-norm clipping at 0.25 (``trainer.gradient_clip_val``);
- batches of 256 streams × ``tgt_len`` tokens (192 on WikiText-103), the
  mean next-token cross-entropy through the adaptive softmax as the loss;
  dropout 0.1 (the architecture's ``dropout``);
- evaluation every ``trainer.val_check_interval`` steps (LTS: 5,000) on the
  valid and test splits: the mean per-token cross-entropy (nats) over every
  predicted token, ppl = exp(loss).

The ground truth is the last evaluation's ``valid_ppl`` (and ``test_ppl``):
with the cosine schedule ending at its lowest rate, the last evaluation is
the trained model. A non-finite training or evaluation loss stops the run
(status ``"loss is nan!"``, as the other families).

Checkpoints carry the evaluation history, the untrained losses and the RNG
states, as :class:`~tfnas.systems.language_model.LanguageModelSystem` does.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor

from tfnas.data.causal_datamodule import EVAL_SPLITS
from tfnas.models.lts_gpt2 import LtsGpt2LMHeadModel
from tfnas.rng import rng_state, seed_all, set_rng_state
from tfnas.systems.common import NAN_STATUS, TrainingDiverged
from tfnas.systems.language_model import _batch_limit, _ppl

log = logging.getLogger("tfnas.train")

OPTIMIZERS = ("lamb", "adam")


def warmup_cosine(step: int, warmup_steps: int, max_steps: int, lr: float, eta_min: float) -> float:
    """LTS's learning rate at optimizer step ``step`` (0-based; the step about to be taken).

    Linear warmup ``lr · (step + 1) / warmup_steps`` for the first
    ``warmup_steps`` steps, then ``eta_min + (lr − eta_min)(1 + cos(π t / T))/2``
    with t = steps since warmup, T = ``max_steps − warmup_steps`` (t ≥ T keeps eta_min).
    """
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    total = max(1, max_steps - warmup_steps)
    t = min(step - warmup_steps, total)
    return eta_min + (lr - eta_min) * (1 + math.cos(math.pi * t / total)) / 2


class CausalLMSystem(pl.LightningModule):
    """Trains an :class:`~tfnas.models.lts_gpt2.LtsGpt2LMHeadModel` with LTS's protocol.

    Use with :class:`~tfnas.data.causal_datamodule.CausalLMDataModule`.

    Args:
        model: the decoder.
        lr: peak learning rate (LTS 0.01).
        optimizer: ``"lamb"`` (LTS) or ``"adam"``.
        weight_decay: (LTS 0).
        warmup_steps: linear warmup length (LTS 1,000).
        max_steps: end of the cosine (LTS 40,000; set ``trainer.max_steps`` to the same).
        eta_min: the cosine's floor (LTS 0.001).
        seed: seeds Python, NumPy and torch when a fresh run starts training.
        eval_initial: evaluate the untrained model on valid and test first (step 0).

    Attributes:
        history: one dict per evaluation: ``step``, ``valid_loss``,
            ``test_loss``, ``train_loss`` (mean since the last evaluation), ``seconds``.
        initial: the untrained model's losses.
        diverged: the run stopped with ``"loss is nan!"``.

    Raises:
        ValueError: an unknown optimizer or non-positive lr / steps.
    """

    def __init__(
        self,
        model: LtsGpt2LMHeadModel,
        lr: float = 0.01,
        optimizer: str = "lamb",
        weight_decay: float = 0.0,
        warmup_steps: int = 1000,
        max_steps: int = 40000,
        eta_min: float = 0.001,
        seed: int = 0,
        eval_initial: bool = True,
    ):
        super().__init__()
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r}; expected one of {OPTIMIZERS}")
        if lr <= 0 or max_steps < 1 or warmup_steps < 0:
            raise ValueError(f"need lr > 0, max_steps >= 1, warmup_steps >= 0; got {lr}, {max_steps}, {warmup_steps}")
        self.model = model
        self.lr, self.optimizer_name, self.weight_decay = float(lr), optimizer, float(weight_decay)
        self.warmup_steps, self.max_steps, self.eta_min = int(warmup_steps), int(max_steps), float(eta_min)
        self.seed, self.eval_initial = int(seed), bool(eval_initial)
        self.history: list[dict[str, float]] = []
        self.initial: dict[str, float] = {}
        self.diverged = False
        self._train_sum, self._train_n = 0.0, 0
        self._eval: dict[int, list[float]] = {}
        self._restored_rng: dict[str, Any] | None = None
        self._t0 = time.perf_counter()

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> dict[str, Any]:
        params = self.model.parameters()
        if self.optimizer_name == "lamb":
            from torch_optimizer import Lamb

            opt = Lamb(params, lr=self.lr, weight_decay=self.weight_decay)
        else:
            opt = torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: warmup_cosine(step, self.warmup_steps, self.max_steps, self.lr, self.eta_min) / self.lr
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def window_nll(self, batch: dict[str, Tensor]) -> Tensor:
        """Per-token NLL (nats) of one window: inputs [B, L] predict labels [B, L] → [B, L]."""
        hidden = self.model.transformer(batch["input_ids"])["last_hidden_state"]
        return self.model.nll(hidden, batch["labels"])

    def on_train_start(self) -> None:
        if self._restored_rng is not None:  # resumed: continue the interrupted run's random stream
            set_rng_state(self._restored_rng)
            self._restored_rng = None
            return
        if self.eval_initial and not self.history and not self.initial:
            self.initial = self._evaluate_untrained()
            self._log_row(0, self.initial)
        seed_all(self.seed)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        """Mean next-token NLL of the window.

        Raises:
            TrainingDiverged: the loss is NaN or infinite.
        """
        loss = self.window_nll(batch).mean()
        if not torch.isfinite(loss):
            self.diverged = True
            self.history.append({"step": self.global_step, "valid_loss": math.nan, "test_loss": math.nan,
                                 "train_loss": math.nan, "seconds": time.perf_counter() - self._t0})  # fmt: skip
            raise TrainingDiverged(f"{NAN_STATUS} (training loss {loss.item()} at step {self.global_step})")
        self._train_sum += loss.item()
        self._train_n += 1
        return loss

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def _sum_nll(self, batch: dict[str, Tensor]) -> tuple[float, int]:
        nll = self.window_nll(batch)
        return float(nll.sum()), nll.numel()

    def on_validation_epoch_start(self) -> None:
        self._eval = {}

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        s, n = self._sum_nll(batch)
        acc = self._eval.setdefault(dataloader_idx, [0.0, 0])
        acc[0] += s
        acc[1] += n

    def on_validation_epoch_end(self) -> None:
        """Append the evaluation to :attr:`history`, log it, stop on NaN.

        Raises:
            TrainingDiverged: a loss is NaN or infinite.
        """
        if self.trainer.sanity_checking:
            return
        row = {"step": self.global_step}
        for i, split in enumerate(EVAL_SPLITS):
            s, n = self._eval.get(i, (0.0, 0))
            row[f"{split}_loss"] = s / n if n else math.nan
        row["train_loss"] = self._train_sum / self._train_n if self._train_n else math.nan
        row["seconds"] = time.perf_counter() - self._t0
        self._train_sum, self._train_n = 0.0, 0
        self.history.append(row)
        self._log_row(self.global_step, row)
        if not all(math.isfinite(row[f"{s}_loss"]) for s in EVAL_SPLITS):
            self.diverged = True
            raise TrainingDiverged(f"{NAN_STATUS} (evaluation at step {self.global_step}: {row})")

    def _evaluate_untrained(self) -> dict[str, float]:
        """Losses of the model as it is on the evaluation loaders (honours ``limit_val_batches``)."""
        dm = self.trainer.datamodule
        if dm is None or not hasattr(dm, "eval_dataloader"):
            return {}
        was = self.model.training
        self.model.eval()
        out = {}
        try:
            for split in EVAL_SPLITS:
                loader = dm.eval_dataloader(split)
                limit = _batch_limit(self.trainer.limit_val_batches, len(loader))
                s_tot, n_tot = 0.0, 0
                for k, batch in enumerate(loader):
                    if k >= limit:
                        break
                    s, n = self._sum_nll({key: v.to(self.device) for key, v in batch.items()})
                    s_tot, n_tot = s_tot + s, n_tot + n
                out[f"{split}_loss"] = s_tot / n_tot if n_tot else math.nan
        finally:
            self.model.train(was)
        return out

    def _log_row(self, step: int, row: dict[str, float]) -> None:
        metrics = {}
        for key in ("train_loss", "valid_loss", "test_loss"):
            if key in row and not (key == "train_loss" and math.isnan(row[key])):
                split = key[: -len("_loss")]
                metrics[f"{split}/loss"], metrics[f"{split}/ppl"] = row[key], _ppl(row[key])
        for lg in self.trainer.loggers:
            lg.log_metrics(metrics, step=step)
        shown = " ".join(f"{k}={v:.4f}" for k, v in metrics.items() if k.endswith("/loss"))
        # A trained model's line comes from tfnas.callbacks.TrainingProgress (with steps left and time left).
        untrained = step == 0 and "train/loss" not in metrics
        (log.info if untrained else log.debug)(f"step {step}: {shown}" + (" (untrained)" if untrained else ""))

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["tfnas"] = {"history": list(self.history), "initial": dict(self.initial), "rng": rng_state()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("tfnas")
        if state is None:
            raise KeyError("not a tfnas training checkpoint: the 'tfnas' entry (history, RNG states) is missing")
        self.history, self.initial, self._restored_rng = list(state["history"]), dict(state["initial"]), state["rng"]

    # ------------------------------------------------------------------ results
    def ground_truth(self) -> dict[str, Any]:
        """``valid_loss``/``valid_ppl``, ``test_loss``/``test_ppl`` and ``train_loss`` of the last
        evaluation (NaN when diverged), ``status`` (``"OK"`` or ``"loss is nan!"``) and ``steps``."""
        last = self.history[-1] if self.history else {}
        out: dict[str, Any] = {}
        for split in EVAL_SPLITS:
            v = math.nan if self.diverged else float(last.get(f"{split}_loss", math.nan))
            out[f"{split}_loss"], out[f"{split}_ppl"] = v, _ppl(v)
        out["train_loss"] = float(last.get("train_loss", math.nan))
        out["status"] = NAN_STATUS if self.diverged else "OK"
        out["steps"] = int(last.get("step", 0))
        return out

    def curves(self) -> dict[str, list[float]]:
        """Per-evaluation lists: ``step``, ``train_loss``, ``valid_loss``, ``test_loss``, ``seconds``."""
        keys = ("step", "train_loss", "valid_loss", "test_loss", "seconds")
        return {k: [row.get(k, math.nan) for row in self.history] for k in keys}
