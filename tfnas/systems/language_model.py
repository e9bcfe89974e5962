"""The Lightning system that trains a NAS-Bench-NLP language model (docs/SPACES.md §1).

Protocol (NAS-Bench-NLP ``train.py``/``main_one_model_train.py``, after
AWD-LSTM, Merity et al. 2018):

- Adam (lr 1e-3, weight decay 1.2e-6); each step's learning rate is
  ``lr · seq_len / bptt`` for that step's drawn window length;
- loss = cross-entropy + α·mean(dropped last-layer output²) (AR, α = 2)
  + β·mean((h_t − h_{t−1})²) over the raw last-layer output (TAR, β = 1);
- gradient-norm clipping at 0.25;
- truncated BPTT in order: the hidden state is carried from one training
  window to the next, detached, and starts from zeros at every epoch;
- after every epoch, the mean per-token cross-entropy in eval mode of the
  train, valid and test splits (each with a hidden state carried across its
  windows). The benchmark stops with status ``"loss is nan!"`` when one is
  NaN; here a non-finite training loss stops the run at once as well
  (the weights are NaN from then on) and the epoch's losses are NaN.

Manual optimization keeps the per-step learning rate and the hidden state in
one place (:meth:`LanguageModelSystem.training_step`).

Evaluation differs from the benchmark's code in one detail: the benchmark
divides the summed window losses by the split's number of *rows* instead of
the number of predicted rows (one fewer), which shrinks its losses by the
factor (L − 1)/L (0.9994 on PTB test); we report the exact per-token mean.

Checkpoints: :meth:`on_save_checkpoint` stores the per-epoch history, the
losses at initialization and the global RNG states (torch, CUDA, NumPy,
Python). A resumed run restores the RNG states at ``on_train_start``, so
resuming from an epoch-end checkpoint reproduces an uninterrupted run (the
window plans are seeded per epoch and the hidden state restarts each epoch).
Both, and the evaluation's bookkeeping, come from
:class:`~tfnas.systems.base.LanguageModelEvaluation`.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tfnas.data.ptb_datamodule import EVAL_SPLITS
from tfnas.models.awd_lm import LMOutput
from tfnas.systems.base import LanguageModelEvaluation
from tfnas.systems.common import NAN_STATUS  # noqa: F401  (also imported from here)

log = logging.getLogger("tfnas.train")


def awd_loss(out: LMOutput, targets: Tensor, alpha: float, beta: float) -> tuple[Tensor, Tensor]:
    """The AWD-LSTM training loss of one window.

    Args:
        out: the model's output on ``[s, B]`` tokens, with ``logits`` [s, B, V].
        targets: [s, B] next-token ids.
        alpha: AR weight on mean(output²) of the dropped last-layer output.
        beta: TAR weight on mean((h_t − h_{t−1})²) of the raw last-layer output
            (0 for a one-step window).

    Returns:
        ``(loss, ce)``: the regularised loss and the mean cross-entropy (nats/token).
    """
    ce = F.cross_entropy(out.logits.reshape(-1, out.logits.size(-1)), targets.reshape(-1))
    loss = ce
    if alpha:
        loss = loss + alpha * out.output.pow(2).mean()
    if beta and out.raw_output.size(0) > 1:
        loss = loss + beta * (out.raw_output[1:] - out.raw_output[:-1]).pow(2).mean()
    return loss, ce


def scaled_lr(base_lr: float, seq_len: int, bptt: int) -> float:
    """AWD-LSTM's per-step learning rate ``base_lr · seq_len / bptt``."""
    return base_lr * seq_len / bptt


def detach_hidden(hidden: list[tuple[Tensor, ...]]) -> list[tuple[Tensor, ...]]:
    """The hidden tuples cut from their graph (truncated BPTT)."""
    return [tuple(h.detach() for h in layer) for layer in hidden]


class LanguageModelSystem(LanguageModelEvaluation):
    """Trains an :class:`~tfnas.models.awd_lm.AWDLanguageModel` with the NAS-Bench-NLP protocol.

    Use with :class:`~tfnas.data.ptb_datamodule.PTBDataModule`: training
    batches are its ordered windows, the validation loop its three
    evaluation loaders (train, valid, test).

    Args:
        model: the language model (``forward(tokens, hidden) -> LMOutput``,
            ``init_hidden(bsz)``).
        lr: Adam learning rate before the per-step scaling (benchmark 1e-3).
        wdecay: Adam (L2) weight decay (benchmark 1.2e-6).
        clip: gradient-norm clip (benchmark 0.25; 0 disables).
        alpha: AR weight (benchmark 2).
        beta: TAR weight (benchmark 1).
        bptt: the reference window length of the lr scaling (benchmark 70).
        seed: seeds torch, NumPy and Python when a fresh run starts training
            (after the training-free scores, whatever RNG they used).
        eval_initial: evaluate the untrained model (valid and test, and the
            train split's evaluated part) when a fresh run starts; logged at epoch 0.

    Attributes:
        history: one dict per completed epoch: ``epoch`` (1-based),
            ``train_loss``, ``val_loss``, ``test_loss`` (nats/token),
            ``seconds`` (training + evaluation wall time of the epoch).
            :meth:`curves` gives these as per-epoch lists.
        initial: the losses of the untrained model (empty if not evaluated).
        diverged: whether the run stopped with ``"loss is nan!"``.
        last_lr: the learning rate applied at the last optimizer step.
        last_loss, last_ce: the last step's regularised loss and cross-entropy.
    """

    EVAL_SPLITS = EVAL_SPLITS
    EVAL_LOSS_KEYS = ("train_loss", "val_loss", "test_loss")
    LOSS_KEYS = EVAL_LOSS_KEYS
    CURVE_KEYS = ("epoch", "train_loss", "val_loss", "test_loss", "seconds")

    def __init__(
        self,
        model: nn.Module,
        lr: float = 1e-3,
        wdecay: float = 1.2e-6,
        clip: float = 0.25,
        alpha: float = 2.0,
        beta: float = 1.0,
        bptt: int = 70,
        seed: int = 0,
        eval_initial: bool = True,
    ):
        super().__init__(seed, eval_initial)
        if lr <= 0 or bptt < 1:
            raise ValueError(f"lr must be > 0 and bptt >= 1, got lr={lr}, bptt={bptt}")
        self.model = model
        self.lr, self.wdecay, self.clip, self.alpha, self.beta = float(lr), float(wdecay), float(clip), float(alpha), float(beta)
        self.bptt = int(bptt)
        self.automatic_optimization = False
        self.last_lr: float | None = None
        self.last_loss: float | None = None
        self.last_ce: float | None = None
        self._ce_sum, self._ce_n = 0.0, 0
        self._hidden: list[tuple[Tensor, ...]] | None = None
        self._epoch_t0 = time.perf_counter()

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.model.parameters(), lr=self.lr, weight_decay=self.wdecay)

    def on_train_epoch_start(self) -> None:
        self._hidden = None
        self._ce_sum, self._ce_n = 0.0, 0
        self._epoch_t0 = time.perf_counter()

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        """One AWD step: carried hidden state, regularised loss, clipping, lr scaled by ``seq_len / bptt``.

        Raises:
            TrainingDiverged: the loss is NaN or infinite.
        """
        x, y, seq_len = batch["x"], batch["y"], int(batch["seq_len"])
        if batch_idx == 0 or self._hidden is None:  # AWD: zero state at the start of every epoch
            hidden = self.model.init_hidden(x.size(1))
        else:
            hidden = detach_hidden(self._hidden)
        opt = self.optimizers()
        opt.zero_grad()
        out = self.model(x, hidden)
        loss, ce = awd_loss(out, y, self.alpha, self.beta)
        if not torch.isfinite(loss):
            self._training_diverged({"epoch": self.current_epoch + 1, "train_loss": math.nan, "val_loss": math.nan,
                                     "test_loss": math.nan, "seconds": time.perf_counter() - self._epoch_t0},
                                    f"training loss {loss.item()} at epoch {self.current_epoch + 1}, step {batch_idx}")
        self.manual_backward(loss)
        if self.clip > 0:
            self.clip_gradients(opt, gradient_clip_val=self.clip, gradient_clip_algorithm="norm")
        groups = opt.optimizer.param_groups
        base = [g["lr"] for g in groups]
        self.last_lr = scaled_lr(base[0], seq_len, self.bptt)
        for g, b in zip(groups, base):
            g["lr"] = scaled_lr(b, seq_len, self.bptt)
        opt.step()
        for g, b in zip(groups, base):
            g["lr"] = b
        self._hidden = detach_hidden(out.hidden)
        self.last_loss, self.last_ce = loss.item(), ce.item()
        self._report_progress(batch_idx)
        return loss.detach()

    def _report_progress(self, batch_idx: int) -> None:
        """Every ``trainer.log_every_n_steps`` steps: the mean training cross-entropy since the last report."""
        self._ce_sum, self._ce_n = self._ce_sum + self.last_ce, self._ce_n + 1
        every = max(1, int(getattr(self.trainer, "log_every_n_steps", 50) or 50))
        if (batch_idx + 1) % every:
            return
        mean = self._ce_sum / self._ce_n
        self._ce_sum, self._ce_n = 0.0, 0
        for lg in self.trainer.loggers:
            lg.log_metrics({"train/step_ce": mean}, step=self.global_step)
        log.info(f"epoch {self.current_epoch + 1} step {batch_idx + 1}: mean training cross-entropy {mean:.4f} "
                 f"({time.perf_counter() - self._epoch_t0:.0f}s)")

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def window_loss(self, batch: dict[str, Any], hidden: list[tuple[Tensor, ...]] | None) -> tuple[float, int, list]:
        """Summed cross-entropy of one evaluation window.

        Returns:
            ``(sum of token losses in nats, number of tokens, final hidden)``.
        """
        x, y = batch["x"], batch["y"]
        if hidden is None:
            hidden = self.model.init_hidden(x.size(1))
        out = self.model(x, hidden)
        s = F.cross_entropy(out.logits.reshape(-1, out.logits.size(-1)), y.reshape(-1), reduction="sum")
        return float(s), y.numel(), detach_hidden(out.hidden)

    def _summed_loss(self, batch: dict[str, Any], carry: list[tuple[Tensor, ...]] | None) -> tuple[float, int, list]:
        return self.window_loss(batch, carry)  # the hidden state is carried across a split's windows

    def on_validation_epoch_end(self) -> None:
        """Append the epoch's losses to :attr:`history`, log them, stop on NaN.

        Raises:
            TrainingDiverged: a loss is NaN or infinite.
        """
        if self.trainer.sanity_checking:
            return
        losses = self._split_losses()
        epoch = self.current_epoch + 1
        row = {"epoch": epoch, **{k: losses.get(k, math.nan) for k in self.EVAL_LOSS_KEYS},
               "seconds": time.perf_counter() - self._epoch_t0}
        self._append_evaluation(epoch, row, losses, f"after epoch {epoch}")

    def _log_evaluation(self, epoch: int, row: dict[str, float]) -> None:
        shown = self._loss_text(self._log_losses(epoch, row))
        # A trained epoch's line comes from tfnas.callbacks.TrainingProgress (with epochs left and time left).
        (log.debug if "seconds" in row else log.info)(
            f"epoch {epoch}: {shown}" + (f" ({row['seconds']:.1f}s)" if "seconds" in row else " (untrained)"))

    # ------------------------------------------------------------------ results
    def ground_truth(self) -> dict[str, Any]:
        """The benchmark's ground truth from :attr:`history`.

        Returns:
            ``test_loss``, ``test_ppl`` (last epoch; NaN when the run
            diverged), ``val_loss``, ``val_ppl``, ``train_loss`` (last epoch),
            ``status`` (``"OK"`` or ``"loss is nan!"``) and ``epochs``
            (epochs run, the diverged one included).
        """
        return {**self._ground_truth(("test_loss", "val_loss"), kept_on_divergence=("val_loss",)),
                "epochs": len(self.history)}
