"""The Lightning system used by ``score.py``: an untrained network, no training."""

from __future__ import annotations

import lightning.pytorch as pl
from torch import nn


class ScoringSystem(pl.LightningModule):
    """Wraps an untrained network so a :class:`~tfnas.callbacks.TrainingFreeScores`
    callback can score it inside ``Trainer.fit(max_steps=0)``: Lightning places
    the network on the accelerator and drives the loggers; no optimizer step runs.

    Args:
        model: the network to score.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def training_step(self, batch, batch_idx):  # never reached with max_steps=0
        return None

    def configure_optimizers(self):
        return None
