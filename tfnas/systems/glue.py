"""GLUE fine-tuning of a pretrained FlexiBERT discriminator (docs/SPACES.md §2, "Ground-truth training").

ELECTRA-small's fine-tuning recipe (Clark et al., 2020, Appendix; ELECTRA's
``configure_finetuning.py`` and ``classification_tasks.py``):

- head: dropout 0.1 on the final hidden state of ``[CLS]`` (ELECTRA's pooled
  output has no extra dense layer), then a dense layer to the classes (or to
  1 output for STS-B), initialised as TF's default dense layer (Glorot
  uniform weights, zero bias); loss: cross-entropy, or the squared error of
  the STS-B target scaled to [0, 1];
- AdamW (β = 0.9, 0.999, ε = 1e-6, decoupled weight decay 0.01 except biases
  and LayerNorm), lr 3e-4, batch 32, 3 epochs (10 for RTE and STS-B),
  linear warm-up over the first 10 % of the steps, then linear decay to 0;
- layer-wise learning-rate decay 0.8 (ELECTRA's ``_get_layer_lrs``): the task
  head gets lr; encoder layer i (1 = bottom … L = top) gets lr·0.8^(L+2−i);
  the embeddings (and their E → H projection) get lr·0.8^(L+2);
- the dev metric after the last epoch: Matthews correlation (CoLA),
  Spearman correlation (STS-B), accuracy otherwise; F1 also for MRPC and QQP.
  The benchmark's per-task scores are these ×100.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.functional import accuracy, f1_score, matthews_corrcoef, spearman_corrcoef

from tfnas.data.glue import GlueTask, get_task
from tfnas.models.flexibert import FlexiBertModel
from tfnas.systems.common import TrainingDiverged
from tfnas.systems.electra import make_scheduler, no_decay

log = logging.getLogger("tfnas.train")


def glue_metrics(task: GlueTask | str, predictions: Tensor, labels: Tensor) -> dict[str, float]:
    """The dev metrics of a GLUE task (torchmetrics), as fractions (not ×100).

    Args:
        task: the task.
        predictions: [N] predicted class ids, or regression outputs for STS-B.
        labels: [N] gold class ids, or targets.

    Returns:
        ``{task.metric: value, **extra metrics}``: ``accuracy`` (share
        correct), ``mcc`` (Matthews correlation, binary), ``spearman``
        (Spearman rank correlation, ties averaged), ``f1`` (binary F1 of class 1).

    Raises:
        ValueError: empty or differently sized inputs.
    """
    task = get_task(task) if isinstance(task, str) else task
    if predictions.shape != labels.shape or predictions.numel() == 0:
        raise ValueError(
            f"predictions {tuple(predictions.shape)} and labels {tuple(labels.shape)} must be equal and non-empty"
        )
    out: dict[str, float] = {}
    for name in (task.metric, *task.extra_metrics):
        if name == "spearman":
            v = spearman_corrcoef(predictions.double(), labels.double())
        elif name == "mcc":
            v = matthews_corrcoef(predictions.long(), labels.long(), task="binary")
        elif name == "f1":
            v = f1_score(predictions.long(), labels.long(), task="binary")
        elif name == "accuracy":
            v = accuracy(predictions.long(), labels.long(), task="multiclass", num_classes=task.num_labels,
                         average="micro")
        else:
            raise ValueError(f"unknown GLUE metric {name!r}")
        out[name] = float(v)
    return out


class ClassificationHead(nn.Module):
    """ELECTRA's task head: dropout on the ``[CLS]`` state, dense H → C: [B, S, H] -> [B, C] ([B] when C = 1)."""

    def __init__(self, hidden_size: int, num_labels: int, dropout: float = 0.1):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_size, num_labels)
        nn.init.xavier_uniform_(self.out.weight)  # tf.layers.dense's default (glorot_uniform)
        nn.init.zeros_(self.out.bias)
        self.num_labels = num_labels

    def forward(self, hidden: Tensor) -> Tensor:
        logits = self.out(self.dropout(hidden[:, 0]))
        return logits.squeeze(-1) if self.num_labels == 1 else logits


def parameter_depth(name: str, num_layers: int) -> int:
    """ELECTRA's depth of an encoder parameter: 0 embeddings, i for layer i (1-based).

    Raises:
        ValueError: a parameter outside embeddings and encoder layers.
    """
    if name.startswith("embeddings.") or name.startswith("embeddings_project."):
        return 0
    if name.startswith("encoder.layer."):
        i = int(name.split(".")[2])
        if not 0 <= i < num_layers:
            raise ValueError(f"parameter {name!r}: layer index {i} outside 0..{num_layers - 1}")
        return i + 1
    raise ValueError(f"parameter {name!r} has no layer-wise learning rate (not embeddings or encoder.layer.*)")


def layerwise_lr_groups(
    encoder: FlexiBertModel, head: nn.Module, lr: float, layer_decay: float = 0.8, weight_decay: float = 0.01
) -> list[dict[str, Any]]:
    """AdamW parameter groups with ELECTRA's layer-wise learning-rate decay.

    With L encoder layers, a parameter at depth d (0 embeddings, i for layer
    i = 1 … L, L + 2 for the head) gets ``lr · layer_decay^(L + 2 − d)``.
    Each depth gives two groups: weights with ``weight_decay`` and biases /
    LayerNorm parameters without.

    Args:
        encoder: the pretrained discriminator.
        head: the task head.
        lr: the head's learning rate (3e-4).
        layer_decay: 0.8 (1 disables the decay).
        weight_decay: 0.01.

    Returns:
        Groups with ``params``, ``lr``, ``weight_decay``, ``depth`` and ``name``
        (``embeddings``, ``layer_<i>``, ``head``, suffixed ``/decay`` or ``/no_decay``).

    Raises:
        ValueError: ``layer_decay`` not in (0, 1], or an encoder parameter with no depth.
    """
    if not 0.0 < layer_decay <= 1.0:
        raise ValueError(f"layer_decay must be in (0, 1], got {layer_decay}")
    n = encoder.config.num_hidden_layers
    buckets: dict[tuple[int, bool], list[nn.Parameter]] = {}
    for name, p in encoder.named_parameters():
        buckets.setdefault((parameter_depth(name, n), no_decay(name)), []).append(p)
    for name, p in head.named_parameters():
        buckets.setdefault((n + 2, no_decay(name)), []).append(p)
    groups = []
    for (depth, exempt), params in sorted(buckets.items()):
        label = "embeddings" if depth == 0 else ("head" if depth == n + 2 else f"layer_{depth}")
        groups.append({
            "params": params,
            "lr": lr * layer_decay ** (n + 2 - depth),
            "weight_decay": 0.0 if exempt else float(weight_decay),
            "depth": depth,
            "name": f"{label}/{'no_decay' if exempt else 'decay'}",
        })
    return groups


class GlueSystem(pl.LightningModule):
    """Fine-tunes a pretrained :class:`FlexiBertModel` on one GLUE task.

    Use with :class:`tfnas.data.glue.GlueDataModule` (batches with
    ``input_ids``, ``attention_mask``, ``token_type_ids``, ``labels``).
    Validation runs on the dev set after every epoch; the last epoch's
    metrics are the task's score.

    Logged: ``<task>/train_loss`` per step, ``<task>/lr``; per epoch
    ``<task>/dev_loss`` and ``<task>/dev_<metric>`` (fractions).

    Args:
        encoder: the pretrained discriminator (fine-tuned in place).
        task: the task (name or :class:`GlueTask`).
        lr: peak learning rate of the head (3e-4).
        layer_decay: layer-wise decay (0.8).
        weight_decay: 0.01.
        warmup_fraction: share of the steps with linear warm-up (0.1).
        adam_eps: 1e-6.
        dropout: the head's dropout (0.1).

    Attributes:
        model: the encoder.
        head: the :class:`ClassificationHead`.
        history: per epoch ``{"epoch", "dev_loss", <metrics>, "seconds"}``.
    """

    def __init__(
        self,
        encoder: FlexiBertModel,
        task: GlueTask | str,
        lr: float = 3e-4,
        layer_decay: float = 0.8,
        weight_decay: float = 0.01,
        warmup_fraction: float = 0.1,
        adam_eps: float = 1e-6,
        dropout: float = 0.1,
    ):
        super().__init__()
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if not 0.0 <= warmup_fraction < 1.0:
            raise ValueError(f"warmup_fraction must be in [0, 1), got {warmup_fraction}")
        self.task = get_task(task) if isinstance(task, str) else task
        self.model = encoder
        self.head = ClassificationHead(encoder.config.hidden_size, self.task.num_labels, dropout)
        self.lr, self.layer_decay, self.weight_decay = float(lr), float(layer_decay), float(weight_decay)
        self.warmup_fraction, self.adam_eps = float(warmup_fraction), float(adam_eps)
        self.history: list[dict[str, float]] = []
        self._preds: list[Tensor] = []
        self._labels: list[Tensor] = []
        self._loss_sum, self._loss_n = 0.0, 0
        self._t0 = time.perf_counter()

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                token_type_ids: Tensor | None = None) -> Tensor:
        """Logits [B, C] (classification) or predictions [B] (regression)."""
        return self.head(self.model(input_ids, attention_mask, token_type_ids).last_hidden_state)

    def loss(self, output: Tensor, labels: Tensor) -> Tensor:
        """Cross-entropy, or squared error for regression (mean over the batch)."""
        if self.task.is_regression:
            return F.mse_loss(output.float(), labels.float())
        return F.cross_entropy(output.float(), labels.long())

    def configure_optimizers(self):
        groups = layerwise_lr_groups(self.model, self.head, self.lr, self.layer_decay, self.weight_decay)
        opt = torch.optim.AdamW(groups, lr=self.lr, betas=(0.9, 0.999), eps=self.adam_eps)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        sched = make_scheduler(opt, int(self.warmup_fraction * total), total, "linear")
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "frequency": 1}}

    def on_train_epoch_start(self) -> None:
        self._t0 = time.perf_counter()

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        """One step.

        Raises:
            TrainingDiverged: the loss is NaN or infinite.
        """
        out = self(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        loss = self.loss(out, batch["labels"])
        if not torch.isfinite(loss):
            raise TrainingDiverged(f"{self.task.name} fine-tuning loss is {loss.item()} at step {self.global_step}")
        self.log(f"{self.task.name}/train_loss", loss.detach(), on_step=True, on_epoch=False)
        self.log(f"{self.task.name}/lr", self.lr_schedulers().get_last_lr()[-1], on_step=True, on_epoch=False)
        return loss

    def on_validation_epoch_start(self) -> None:
        self._preds, self._labels, self._loss_sum, self._loss_n = [], [], 0.0, 0

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        out = self(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        labels = batch["labels"]
        self._loss_sum += float(self.loss(out, labels)) * labels.shape[0]
        self._loss_n += labels.shape[0]
        self._preds.append((out if self.task.is_regression else out.argmax(-1)).detach().cpu())
        self._labels.append(labels.detach().cpu())

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking or not self._preds:
            return
        metrics = glue_metrics(self.task, torch.cat(self._preds), torch.cat(self._labels))
        row = {"epoch": int(self.current_epoch) + 1, "dev_loss": self._loss_sum / max(1, self._loss_n), **metrics,
               "seconds": time.perf_counter() - self._t0}
        if self.history and self.history[-1]["epoch"] == row["epoch"]:
            self.history[-1] = row  # a re-run validation of the same epoch (resume) replaces it
        else:
            self.history.append(row)
        for lg in self.trainer.loggers:
            lg.log_metrics({f"{self.task.name}/dev_{k}": v for k, v in row.items() if k not in ("epoch", "seconds")},
                           step=int(self.global_step))
        shown = " ".join(f"{k}={v:.4f}" for k, v in metrics.items())
        # the progress line of tfnas.callbacks.TrainingProgress shows the same with the time left
        log.debug(f"{self.task.name} epoch {row['epoch']}: dev_loss={row['dev_loss']:.4f} {shown}")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["tfnas_glue"] = {"history": list(self.history)}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.history = list(checkpoint.get("tfnas_glue", {}).get("history", []))

    def final(self) -> dict[str, float]:
        """The last epoch's dev metrics (fractions), or {} before any evaluation."""
        if not self.history:
            return {}
        last = self.history[-1]
        return {k: last[k] for k in (self.task.metric, *self.task.extra_metrics) if k in last}
