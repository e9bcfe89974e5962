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
states, as :class:`~tfnas.systems.language_model.LanguageModelSystem`'s do:
both systems are a :class:`~tfnas.systems.base.LanguageModelEvaluation`.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import torch
from torch import Tensor

from tfnas.data.causal_datamodule import EVAL_SPLITS
from tfnas.models.lts_gpt2 import LtsGpt2LMHeadModel
from tfnas.systems.base import LanguageModelEvaluation

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


class CausalLMSystem(LanguageModelEvaluation):
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
            :meth:`curves` gives ``step``, ``train_loss``, ``valid_loss``,
            ``test_loss`` and ``seconds`` as per-evaluation lists.
        initial: the untrained model's losses.
        diverged: the run stopped with ``"loss is nan!"``.

    Raises:
        ValueError: an unknown optimizer or non-positive lr / steps.
    """

    EVAL_SPLITS = EVAL_SPLITS
    EVAL_LOSS_KEYS = tuple(f"{split}_loss" for split in EVAL_SPLITS)
    LOSS_KEYS = ("train_loss", "valid_loss", "test_loss")
    CURVE_KEYS = ("step", "train_loss", "valid_loss", "test_loss", "seconds")

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
        super().__init__(seed, eval_initial)
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r}; expected one of {OPTIMIZERS}")
        if lr <= 0 or max_steps < 1 or warmup_steps < 0:
            raise ValueError(f"need lr > 0, max_steps >= 1, warmup_steps >= 0; got {lr}, {max_steps}, {warmup_steps}")
        self.model = model
        self.lr, self.optimizer_name, self.weight_decay = float(lr), optimizer, float(weight_decay)
        self.warmup_steps, self.max_steps, self.eta_min = int(warmup_steps), int(max_steps), float(eta_min)
        self._train_sum, self._train_n = 0.0, 0
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

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        """Mean next-token NLL of the window.

        Raises:
            TrainingDiverged: the loss is NaN or infinite.
        """
        loss = self.window_nll(batch).mean()
        if not torch.isfinite(loss):
            self._training_diverged({"step": self.global_step, "valid_loss": math.nan, "test_loss": math.nan,
                                     "train_loss": math.nan, "seconds": time.perf_counter() - self._t0},
                                    f"training loss {loss.item()} at step {self.global_step}")  # fmt: skip
        self._train_sum += loss.item()
        self._train_n += 1
        return loss

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def _summed_loss(self, batch: dict[str, Tensor], carry: Any) -> tuple[float, int, None]:
        nll = self.window_nll(batch)  # the windows are independent: nothing is carried
        return float(nll.sum()), nll.numel(), None

    def on_validation_epoch_end(self) -> None:
        """Append the evaluation to :attr:`history`, log it, stop on NaN.

        Raises:
            TrainingDiverged: a loss is NaN or infinite.
        """
        if self.trainer.sanity_checking:
            return
        losses = self._split_losses()
        row = {"step": self.global_step, **{k: losses.get(k, math.nan) for k in self.EVAL_LOSS_KEYS}}
        row["train_loss"] = self._train_sum / self._train_n if self._train_n else math.nan
        row["seconds"] = time.perf_counter() - self._t0
        self._train_sum, self._train_n = 0.0, 0
        self._append_evaluation(self.global_step, row, self.EVAL_LOSS_KEYS, f"at step {self.global_step}")

    def _log_evaluation(self, step: int, row: dict[str, float]) -> None:
        metrics = self._log_losses(step, row, skip_nan=("train_loss",))
        # A trained model's line comes from tfnas.callbacks.TrainingProgress (with steps left and time left).
        untrained = step == 0 and "train/loss" not in metrics
        (log.info if untrained else log.debug)(
            f"step {step}: {self._loss_text(metrics)}" + (" (untrained)" if untrained else ""))

    # ------------------------------------------------------------------ results
    def ground_truth(self) -> dict[str, Any]:
        """``valid_loss``/``valid_ppl``, ``test_loss``/``test_ppl`` and ``train_loss`` of the last
        evaluation (NaN when diverged), ``status`` (``"OK"`` or ``"loss is nan!"``) and ``steps``."""
        steps = int(self.history[-1].get("step", 0)) if self.history else 0
        return {**self._ground_truth(self.EVAL_LOSS_KEYS), "steps": steps}
