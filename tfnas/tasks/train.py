"""The training task behind ``train.py``: ground-truth training of one architecture.

One call trains architecture ``arch`` of the configured space with its
benchmark's protocol, chosen by the space's model family (:data:`TRAINERS`):
``rnn`` (NAS-Bench-NLP, this module), ``bert`` (NAS-Bench-BERT,
:mod:`tfnas.tasks.train_bert`) and ``gpt`` (LTS GPT-2, :mod:`tfnas.tasks.train_gpt`). The job loop (:mod:`tfnas.tasks.loop`)
handles out-of-range indices, resume and saving, as for ``score.py``.

NAS-Bench-NLP training writes one record (``source="train"``) in the
format of ``score.py``: the training-free scores of the untrained model
(computed by :class:`~tfnas.callbacks.TrainingFreeScores` at the start of
fit, on the scoring minibatch ``batch_index``) *and* the ground truth
(``truth = {test_loss, test_ppl, val_loss, val_ppl, train_loss, status,
epochs}``, per-epoch curves in ``extra["curves"]``). ``analyze.py`` reads
such records directly; their truth serves where the benchmark has none
(generated cells): beside a score record's copy of the benchmark's it is not
used, and named in a warning (:mod:`tfnas.analysis.load`).

Conventions
-----------
- *Hyperparameters*: each of ``lr, wdecay, clip, alpha, beta, dropout,
  dropouth, dropouti, dropoute, wdrop`` is ``cfg.hparams.<key>`` when set,
  else the architecture's benchmark log value (``arch.meta``), else
  ``cfg.hparam_defaults.<key>`` (the benchmark's values). The values used
  and where each came from are in ``extra["hparams"]``/``extra["hparam_sources"]``.
- *Config hash*: the scoring settings of ``score.py`` plus every training
  setting (protocol, hyperparameter config, epochs and batch limits), so a
  train record never collides with a score record of the same architecture.
- *Diverged training*: the architecture is fine, its training is not. The
  record is ``status: "ok"`` with ``truth["status"] = "loss is nan!"``,
  ``truth["test_loss"]`` and ``test_ppl`` NaN, ``extra["failed_training"] = True``
  (as the benchmark reader flags a failed log with ``meta["failed"]``).
- *Errors*: any other exception gives a ``status: "error"`` record with the
  error text and an empty truth; nothing is raised to Hydra, so a multirun
  continues.
- *Checkpoints and resume*: Lightning checkpoints (``last.ckpt`` and one per
  epoch) go to ``<checkpoint.dir>/<space>/arch_<i>_<hash>/``. ``ckpt_path=...``
  resumes from a given checkpoint; otherwise a run resumes from its own
  ``last.ckpt`` when there is one (``resume=false`` or ``overwrite=true``
  start afresh). A resumed run takes its training-free scores from the
  checkpoint, since the model is no longer untrained when fit starts.
- *Skip*: an existing record for the same architecture and configuration is
  kept and the job skipped, unless ``overwrite=true``.
"""

from __future__ import annotations

import gc
import logging
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig

from tfnas import results
from tfnas.callbacks import InitialScores, TrainingProgress
from tfnas.data.ptb_datamodule import PTBDataModule
from tfnas.models.awd_lm import count_parameters
from tfnas.schema import TrainConfig, validate
from tfnas.systems.common import TrainingDiverged
from tfnas.systems.language_model import LanguageModelSystem
from tfnas.tasks.loop import (ArchitectureJob, announce_training, fmt, resume_checkpoint, run_dir, run_job,
                              trainer_settings)
from tfnas.tasks.runtime import make_loggers, make_trainer, setup_runtime, to_container
from tfnas.tasks.score import check_metrics, scorer, sweep_settings

log = logging.getLogger("tfnas.train")

#: Hyperparameters taken from the architecture's benchmark log when it has them.
HPARAM_KEYS = ("lr", "wdecay", "clip", "alpha", "beta", "dropout", "dropouth", "dropouti", "dropoute", "wdrop")
#: Model keyword arguments among :data:`HPARAM_KEYS`.
MODEL_KEYS = ("dropout", "dropouth", "dropouti", "dropoute", "wdrop")


def resolve_hparams(
    overrides: Mapping[str, Any] | None, defaults: Mapping[str, Any], meta: Mapping[str, Any]
) -> tuple[dict[str, float], dict[str, str]]:
    """The training hyperparameters of one architecture.

    Args:
        overrides: ``cfg.hparams``: a non-null value wins.
        defaults: ``cfg.hparam_defaults``: used when neither an override nor
            the log gives a value.
        meta: the architecture's ``meta`` (a benchmark log's hyperparameters).

    Returns:
        ``(values, sources)``: each key of :data:`HPARAM_KEYS` -> float, and
        -> ``"config"``, ``"log"`` or ``"default"``.

    Raises:
        KeyError: a key missing from ``defaults`` when it is needed.
        ValueError: an unknown key in ``overrides``.
    """
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(HPARAM_KEYS))
    if unknown:
        raise ValueError(f"unknown hparams key(s) {unknown}; known: {list(HPARAM_KEYS)}")
    values, sources = {}, {}
    for k in HPARAM_KEYS:
        if overrides.get(k) is not None:
            values[k], sources[k] = float(overrides[k]), "config"
        elif meta.get(k) is not None:
            values[k], sources[k] = float(meta[k]), "log"
        else:
            if k not in defaults:
                raise KeyError(f"hparam_defaults has no value for {k!r}")
            values[k], sources[k] = float(defaults[k]), "default"
    return values, sources


def train_settings(cfg: DictConfig, space: Any, data: Any, datamodule: PTBDataModule) -> dict[str, Any]:
    """Everything that changes a train record, except the architecture index.

    The scoring settings of :func:`tfnas.tasks.score.sweep_settings` plus
    ``task: "train"``, the data protocol, the hyperparameter config and the
    result-changing trainer settings. Paths, threads and checkpointing are left out.
    """
    return {
        **sweep_settings(cfg, space, data),
        "task": "train",
        "train_data": datamodule.describe(),
        "hparams": dict(to_container(cfg.hparams) or {}),
        "hparam_defaults": dict(to_container(cfg.hparam_defaults)),
        "trainer": trainer_settings(cfg.trainer, "rnn"),
    }


def _save_last(value: Any) -> bool | str:
    """``checkpoint.save_last``: true (a copy), ``link`` (a symlink to the newest epoch's file)."""
    if value in (True, "link"):
        return value
    raise ValueError(f"checkpoint.save_last must be true or 'link' (resuming needs last.ckpt), got {value!r}")


class RNNTrainJob(ArchitectureJob):
    """Trains NAS-Bench-NLP architectures with the benchmark's protocol (see the module docstring)."""

    verb = "train"
    report_path = True

    def prepare(self, indices: list[int]) -> dict[str, Any]:
        self.data = instantiate(self.cfg.data, _convert_="all")
        self.datamodule = instantiate(self.cfg.datamodule, _convert_="all")  # PTB with the protocol of train.yaml
        t = self.cfg.trainer
        windows = "every training window" if t.get("limit_train_batches") in (None, 1.0) else (
            f"at most {t.limit_train_batches} training windows")
        announce_training(self.cfg, self.space.name, f"{t.max_epochs} epoch(s) of {windows} (bptt {self.cfg.bptt}), "
                          "train/valid/test losses after each" + (", and first of the untrained model "
                          "(eval_initial=true)" if self.cfg.get("eval_initial") else ""),
                          "NAS-Bench-NLP's full 50-epoch protocol",
                          "hours per epoch on a CPU; experiment=quick takes minutes")
        return train_settings(self.cfg, self.space, self.data, self.datamodule)

    def run_one(self, index: int, settings: dict[str, Any], chash: str) -> results.Record:
        """Train architecture ``index`` and return its record (never raises for the architecture's faults)."""
        rec = train_one(self.cfg, self.space, self.data, self.datamodule, index, settings, chash)
        # The Trainer and the system reference each other; collect the cycle now so that a
        # multirun in one process does not hold every trained model and optimizer state.
        gc.collect()
        return rec

    def summary(self, rec: results.Record) -> str:
        t = rec.truth
        return (f"{t['status']}: test_loss={fmt(t['test_loss'], '.4f')} test_ppl={fmt(t['test_ppl'], '.4f')} "
                f"val_loss={fmt(t['val_loss'], '.4f')} after {t['epochs']} epoch(s)")


def train_one(
    cfg: DictConfig, space: Any, data: Any, datamodule: PTBDataModule, index: int, settings: dict, chash: str
) -> results.Record:
    """Train architecture ``index`` and return its record (never raises for the architecture's faults)."""
    t0 = time.perf_counter()
    rec = results.Record(space=space.name, arch=index, benchmark_id=None, seed=int(cfg.seed), config_hash=chash,
                         source="train", settings=dict(settings, arch=index))
    try:
        arch = space[index]
        rec.benchmark_id = arch.benchmark_id
        hp, sources = resolve_hparams(to_container(cfg.hparams), to_container(cfg.hparam_defaults), arch.meta)
        model = space.build(arch, seed=int(cfg.seed), ntoken=datamodule.ntoken, **{k: hp[k] for k in MODEL_KEYS})
        system = LanguageModelSystem(
            model, lr=hp["lr"], wdecay=hp["wdecay"], clip=hp["clip"], alpha=hp["alpha"], beta=hp["beta"],
            bptt=int(cfg.bptt), seed=int(cfg.seed), eval_initial=bool(cfg.eval_initial),
        )
        folder = run_dir(cfg, space.name, index, chash)
        ckpt = resume_checkpoint(cfg, folder)
        initial_scorer = scorer(cfg, space, data) if ckpt is None else None
        keeper = InitialScores(initial_scorer)
        checkpointing = ModelCheckpoint(
            dirpath=str(folder), filename="epoch{epoch:03d}", auto_insert_metric_name=False,
            save_last=_save_last(cfg.checkpoint.get("save_last", True)),
            save_top_k=int(cfg.checkpoint.save_top_k), every_n_epochs=int(cfg.checkpoint.every_n_epochs),
            save_on_train_epoch_end=True, enable_version_counter=False,
        )
        loggers = make_loggers(cfg.logger, str(Path(cfg.results_dir) / "tensorboard"), f"{space.name}_train",
                               f"arch_{index:06d}_{chash}")
        trainer_cfg = {**dict(to_container(cfg.trainer)), "default_root_dir": str(folder)}
        callbacks = ([initial_scorer] if initial_scorer else []) + [keeper, checkpointing,
                                                                    TrainingProgress(f"arch {index}")]
        trainer = make_trainer(trainer_cfg, loggers, callbacks)
        log.info(f"arch {index} (id {arch.benchmark_id}): training {count_parameters(model):,} parameters"
                 + (f", resuming from {ckpt}" if ckpt else "") + f"; checkpoints in {folder}")
        t_fit = time.perf_counter()
        try:
            trainer.fit(system, datamodule=datamodule, ckpt_path=ckpt)
        except TrainingDiverged as exc:
            log.warning(f"arch {index}: {exc}")
        if not system.history:
            raise RuntimeError("no evaluation ran, so there is no ground truth: trainer.max_epochs and "
                               "trainer.limit_val_batches must be > 0")
        initial = keeper.result() or {}
        rec.scores, rec.reasons = dict(initial.get("scores", {})), dict(initial.get("reasons", {}))
        rec.truth = system.ground_truth()
        rec.extra.update({
            "curves": system.curves(),
            "initial": dict(system.initial),
            "hparams": hp,
            "hparam_sources": sources,
            "failed_training": system.diverged,
            "benchmark_truth": dict(arch.truth),
            "num_params": count_parameters(model),
            "score_seconds": initial.get("seconds"),
            "train_seconds": time.perf_counter() - t_fit,
            "resumed_from": ckpt,
            "checkpoint_dir": str(folder),
        })
    except Exception as exc:  # recorded, never raised: one architecture must not stop a sweep
        rec.fail(exc, keep_truth=False)
    rec.seconds = time.perf_counter() - t0
    return rec


def train_rnn(cfg: DictConfig, space: Any) -> dict[str, Any]:
    """Train NAS-Bench-NLP architecture ``cfg.arch``; see the module docstring and :func:`train`."""
    return run_job(RNNTrainJob(cfg, space)).counts_with_last_record()


def _train_bert(cfg: DictConfig, space: Any) -> dict[str, Any]:
    from tfnas.tasks.train_bert import train_bert  # imported on use: the ELECTRA stack is heavy

    return train_bert(cfg, space)


def _train_gpt(cfg: DictConfig, space: Any) -> dict[str, Any]:
    from tfnas.tasks.train_gpt import train_gpt

    return train_gpt(cfg, space)


#: Model family -> its ground-truth training (a new family adds one entry).
TRAINERS: dict[str, Callable[[DictConfig, Any], dict[str, Any]]] = {
    "rnn": train_rnn, "bert": _train_bert, "gpt": _train_gpt,
}


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train the configured architecture with its space's ground-truth protocol.

    Returns:
        ``{"ok", "error", "skipped", "out_of_range"}`` counts of this job,
        ``record`` (the record's path, None when out of range) and ``truth``
        (the record's ground truth).

    Raises:
        ConfigError: a wrong option value or an experiment used with another space
            (:func:`tfnas.schema.validate`), or an unknown metric name, before any work;
            in a Hydra single run, an ``arch`` beyond the space.
        NotImplementedError: a space whose model family has no training here
            (see :data:`TRAINERS`).
    """
    validate(cfg, TrainConfig)
    setup_runtime(cfg.get("threads"))
    space = instantiate(cfg.space, _convert_="all")
    fn = TRAINERS.get(space.family)
    if fn is None:
        raise NotImplementedError(
            f"ground-truth training is implemented for the model families {sorted(TRAINERS)} "
            f"(space=nasbench_nlp, nasbench_bert, lts_gpt2_wt103, lts_gpt2_lm1b); {space.name} (family {space.family!r}) is not supported yet"
        )
    check_metrics(cfg, space)
    return fn(cfg, space)
