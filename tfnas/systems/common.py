"""What the Lightning systems share: the error that stops a diverged training."""

#: The benchmark's status text of a run whose loss became NaN (NAS-Bench-NLP logs).
NAN_STATUS = "loss is nan!"


class TrainingDiverged(RuntimeError):
    """A training, pretraining, fine-tuning or evaluation loss became NaN or infinite.

    Attributes:
        status: the benchmark's status text for such a run (``"loss is nan!"``).
    """

    status = NAN_STATUS
