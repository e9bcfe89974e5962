"""What the training systems share: resuming a run's random stream, and the language models' evaluation.

:class:`ResumableSystem` (language models and ELECTRA pretraining): a fresh
run evaluates the untrained model once and seeds every RNG before training;
a resumed run instead restores the RNG states its checkpoint saved, so it
continues the interrupted run's random stream. Checkpoints carry the
system's state under ``checkpoint["tfnas"]``.

:class:`LanguageModelEvaluation` (the NAS-Bench-NLP AWD LM and the LTS
GPT-2 decoder): the mean per-token cross-entropy of each evaluation split,
summed window by window, its history, the untrained model's losses, the
loss and perplexity logged per split, the ground truth's and curves' rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, ClassVar

import lightning.pytorch as pl
from torch import Tensor

from tfnas.rng import rng_state, seed_all, set_rng_state
from tfnas.systems.common import NAN_STATUS, TrainingDiverged


def perplexity(loss: float) -> float:
    """``exp(loss)`` of a mean cross-entropy in nats/token; NaN for NaN, ``inf`` from 700 nats up."""
    if math.isnan(loss):
        return math.nan
    return math.exp(loss) if loss < 700 else math.inf


class ResumableSystem(pl.LightningModule):
    """A Lightning system whose resumed run continues the interrupted run's random stream.

    Subclasses provide:

    - :meth:`_evaluate_before_training`: what a fresh run evaluates of the
      untrained model (default: nothing);
    - :meth:`_checkpoint_state` / :meth:`_restore_checkpoint_state`: their
      entries of ``checkpoint["tfnas"]`` besides ``"rng"``;
    - :attr:`CHECKPOINT_KIND`: the word naming their checkpoints in the
      error of a checkpoint without that entry.

    Guarantees: at ``on_train_start`` a resumed run (one that loaded a
    checkpoint) restores the global RNG states (torch, CUDA, NumPy, Python)
    and does nothing else; a fresh run calls
    :meth:`_evaluate_before_training`, then seeds every RNG with ``seed``
    (after the training-free scores, whatever RNG they used). A checkpoint
    holds ``{**_checkpoint_state(), "rng": <RNG states>}`` under ``"tfnas"``.

    Args:
        seed: the seed of a fresh run's training.

    Attributes:
        seed: that seed.
    """

    #: ``"not a tfnas <CHECKPOINT_KIND> checkpoint"``: the error of a checkpoint with no ``"tfnas"`` entry.
    CHECKPOINT_KIND: ClassVar[str] = "training"

    def __init__(self, seed: int = 0):
        super().__init__()
        self.seed = int(seed)
        self._restored_rng: dict[str, Any] | None = None

    def on_train_start(self) -> None:
        if self._restored_rng is not None:  # resumed: continue the interrupted run's random stream
            set_rng_state(self._restored_rng)
            self._restored_rng = None
            return
        self._evaluate_before_training()
        seed_all(self.seed)

    def _evaluate_before_training(self) -> None:
        """A fresh run's evaluation of the untrained model, before the RNGs are seeded (none here)."""

    def _checkpoint_state(self) -> dict[str, Any]:
        """The entries of ``checkpoint["tfnas"]`` besides ``"rng"``, in their order."""
        return {}

    def _restore_checkpoint_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`_checkpoint_state` saved, from ``checkpoint["tfnas"]``."""

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["tfnas"] = {**self._checkpoint_state(), "rng": rng_state()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the system's state; the RNG states wait for ``on_train_start``.

        Raises:
            KeyError: the checkpoint has no ``"tfnas"`` entry, or the entry lacks one of its keys.
        """
        state = checkpoint.get("tfnas")
        if state is None:
            raise KeyError(f"not a tfnas {self.CHECKPOINT_KIND} checkpoint: the 'tfnas' entry (history, RNG states) "
                           "is missing")
        self._restore_checkpoint_state(state)
        self._restored_rng = state["rng"]


class LanguageModelEvaluation(ResumableSystem):
    """A language-model system evaluated by the mean per-token cross-entropy of each split.

    Subclasses provide:

    - ``self.model``: the network (put in eval mode for the untrained evaluation);
    - :attr:`EVAL_SPLITS`: the datamodule's evaluation splits, in the order of
      its validation loaders (``dataloader_idx``), each readable alone
      through ``datamodule.eval_dataloader(split)``;
    - :attr:`EVAL_LOSS_KEYS`: the history key of each of those splits;
    - :attr:`LOSS_KEYS`: the history keys logged as ``<split>/loss`` and
      ``<split>/ppl`` (``<split>`` is the key without ``_loss``), in order;
    - :attr:`CURVE_KEYS`: the history keys of :meth:`curves`;
    - :meth:`_summed_loss`: one evaluation window's summed loss;
    - :meth:`_log_evaluation`: logging one history row (or the untrained losses).

    Guarantees:

    - each validation accumulates, per loader, the summed token losses and the
      token count of its windows (:meth:`validation_step`), the state a window
      hands on (an RNN's hidden state) carried to the next window of the same
      loader and restarted at its first; :meth:`_split_losses` gives the means;
    - a fresh run with ``eval_initial``, no history and no initial losses evaluates the
      untrained model the same way over :attr:`EVAL_SPLITS` into
      :attr:`initial` (honouring ``limit_val_batches``) and logs it at step 0;
    - a non-finite loss marks the run :attr:`diverged` and raises
      :class:`~tfnas.systems.common.TrainingDiverged` (``"loss is nan! (...)"``)
      once the row is in :attr:`history` (:meth:`_append_evaluation`,
      :meth:`_training_diverged`);
    - checkpoints carry ``{"history", "initial", "rng"}``.

    Args:
        seed: the seed of a fresh run's training.
        eval_initial: evaluate the untrained model when a fresh run starts.

    Attributes:
        history: one row (a dict of floats) per evaluation.
        initial: the untrained model's losses, by :attr:`EVAL_LOSS_KEYS` (empty if not evaluated).
        diverged: whether the run stopped with ``"loss is nan!"``.
    """

    EVAL_SPLITS: ClassVar[tuple[str, ...]] = ()
    EVAL_LOSS_KEYS: ClassVar[tuple[str, ...]] = ()
    LOSS_KEYS: ClassVar[tuple[str, ...]] = ()
    CURVE_KEYS: ClassVar[tuple[str, ...]] = ()

    def __init__(self, seed: int = 0, eval_initial: bool = True):
        super().__init__(seed)
        self.eval_initial = bool(eval_initial)
        self.history: list[dict[str, float]] = []
        self.initial: dict[str, float] = {}
        self.diverged = False
        self._eval: dict[int, list[float]] = {}
        self._eval_carry: dict[int, Any] = {}

    # ------------------------------------------------------------------ subclass hooks
    def _summed_loss(self, batch: dict[str, Any], carry: Any) -> tuple[float, int, Any]:
        """One evaluation window (no gradients).

        Args:
            batch: the window, on the system's device.
            carry: what the loader's previous window handed on; None at its first.

        Returns:
            ``(sum of the token losses in nats, number of tokens, what the next window gets)``.
        """
        raise NotImplementedError

    def _log_evaluation(self, step: int, row: dict[str, float]) -> None:
        """Log one history row, or the untrained losses at step 0 (see :meth:`_log_losses`)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ evaluation
    def on_validation_epoch_start(self) -> None:
        self._eval, self._eval_carry = {}, {}

    def validation_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        carry = None if batch_idx == 0 else self._eval_carry.get(dataloader_idx)
        s, n, self._eval_carry[dataloader_idx] = self._summed_loss(batch, carry)
        acc = self._eval.setdefault(dataloader_idx, [0.0, 0])
        acc[0] += s
        acc[1] += n

    def _split_losses(self) -> dict[str, float]:
        """The validation's mean token loss (nats/token; NaN with no token) by :attr:`EVAL_LOSS_KEYS`,
        for the loaders that ran."""
        return {self.EVAL_LOSS_KEYS[i]: (s / n if n else math.nan) for i, (s, n) in self._eval.items()}

    def _append_evaluation(self, step: int, row: dict[str, float], checked: Iterable[str], where: str) -> None:
        """Append ``row`` to :attr:`history`, log it at ``step``, stop if a ``checked`` loss is not finite.

        Raises:
            TrainingDiverged: ``row[k]`` is NaN or infinite for a key ``k`` of ``checked``
                (message: ``"loss is nan! (evaluation <where>: <row>)"``).
        """
        self.history.append(row)
        self._log_evaluation(step, row)
        if any(not math.isfinite(row[k]) for k in checked):
            self.diverged = True
            raise TrainingDiverged(f"{NAN_STATUS} (evaluation {where}: {row})")

    def _training_diverged(self, row: dict[str, float], detail: str) -> None:
        """A non-finite training loss: mark the run diverged, append ``row`` (its NaN losses) to :attr:`history`.

        Raises:
            TrainingDiverged: always (message: ``"loss is nan! (<detail>)"``).
        """
        self.diverged = True
        self.history.append(row)
        raise TrainingDiverged(f"{NAN_STATUS} ({detail})")

    def _evaluate_before_training(self) -> None:
        if self.eval_initial and not self.history and not self.initial:
            self.initial = self._evaluate_untrained()
            self._log_evaluation(0, self.initial)

    def _evaluate_untrained(self) -> dict[str, float]:
        """Losses of the model as it is over the evaluation loaders (honours ``limit_val_batches``).

        Returns:
            ``{EVAL_LOSS_KEYS[i]: mean token loss of EVAL_SPLITS[i]}``; empty when the
            datamodule has no ``eval_dataloader``.
        """
        dm = self.trainer.datamodule
        if dm is None or not hasattr(dm, "eval_dataloader"):
            return {}
        was = self.model.training
        self.model.eval()
        out = {}
        try:
            for split, key in zip(self.EVAL_SPLITS, self.EVAL_LOSS_KEYS):
                loader = dm.eval_dataloader(split)
                limit = _batch_limit(self.trainer.limit_val_batches, len(loader))
                s_tot, n_tot, carry = 0.0, 0, None
                for k, batch in enumerate(loader):
                    if k >= limit:
                        break
                    batch = {name: v.to(self.device) if isinstance(v, Tensor) else v for name, v in batch.items()}
                    s, n, carry = self._summed_loss(batch, carry)
                    s_tot, n_tot = s_tot + s, n_tot + n
                out[key] = s_tot / n_tot if n_tot else math.nan
        finally:
            self.model.train(was)
        return out

    def _log_losses(self, step: int, row: dict[str, float], skip_nan: tuple[str, ...] = ()) -> dict[str, float]:
        """Log ``<split>/loss`` and ``<split>/ppl`` of each :attr:`LOSS_KEYS` key in ``row`` to every logger.

        Args:
            step: the loggers' step.
            row: a history row or the untrained losses.
            skip_nan: keys not logged when their value is NaN.

        Returns:
            The logged metrics, in :attr:`LOSS_KEYS` order.
        """
        metrics = {}
        for key in self.LOSS_KEYS:
            if key in row and not (key in skip_nan and math.isnan(row[key])):
                split = key[: -len("_loss")]
                metrics[f"{split}/loss"], metrics[f"{split}/ppl"] = row[key], perplexity(row[key])
        for lg in self.trainer.loggers:
            lg.log_metrics(metrics, step=step)
        return metrics

    # ------------------------------------------------------------------ checkpoints
    def _checkpoint_state(self) -> dict[str, Any]:
        return {"history": list(self.history), "initial": dict(self.initial)}

    def _restore_checkpoint_state(self, state: dict[str, Any]) -> None:
        self.history, self.initial = list(state["history"]), dict(state["initial"])

    # ------------------------------------------------------------------ results
    def _ground_truth(self, keys: tuple[str, ...], kept_on_divergence: tuple[str, ...] = ()) -> dict[str, Any]:
        """The last history row's losses as ground truth.

        Args:
            keys: the loss keys reported, in order, each with its perplexity ``<split>_ppl``.
            kept_on_divergence: those reported as recorded when the run diverged (the others are NaN then).

        Returns:
            ``{<key>, <split>_ppl for each key, "train_loss", "status"}``: NaN where the
            last row (or the history) lacks a key; status ``"OK"`` or ``"loss is nan!"``.
        """
        last = self.history[-1] if self.history else {}
        out: dict[str, Any] = {}
        for key in keys:
            v = math.nan if self.diverged and key not in kept_on_divergence else float(last.get(key, math.nan))
            out[key], out[f"{key[: -len('_loss')]}_ppl"] = v, perplexity(v)
        out["train_loss"] = float(last.get("train_loss", math.nan))
        out["status"] = NAN_STATUS if self.diverged else "OK"
        return out

    def curves(self) -> dict[str, list[float]]:
        """Per-row lists of :attr:`history`, one per :attr:`CURVE_KEYS` key (NaN where a row lacks it)."""
        return {k: [row.get(k, math.nan) for row in self.history] for k in self.CURVE_KEYS}

    @staticmethod
    def _loss_text(metrics: dict[str, float]) -> str:
        """``"train/loss=4.1234 val/loss=..."``: the losses among :meth:`_log_losses`' metrics."""
        return " ".join(f"{k}={v:.4f}" for k, v in metrics.items() if k.endswith("/loss"))


def _batch_limit(limit: int | float | None, n: int) -> int:
    """Lightning's ``limit_*_batches`` semantics: an int caps, a float is a fraction."""
    if limit is None:
        return n
    if isinstance(limit, float):
        return n if limit >= 1.0 else int(n * limit)
    return min(n, int(limit))
