"""The scoring task behind ``score.py``: score architectures at initialization.

One call scores one architecture (``arch=i``) or one shard of them
(``shard=k shard_size=n`` scores arch k·n … k·n+n−1); the job loop
(:mod:`tfnas.tasks.loop`) skips architectures whose record exists (resume),
writes one record each atomically and reports progress. Scoring one
architecture builds the seeded untrained model and runs
:class:`~tfnas.callbacks.TrainingFreeScores` inside
``Trainer.fit(max_steps=0)``; anything that fails gives a ``status: error``
record with the error text. Exceptions of an architecture never escape, so a
Hydra multirun is never stopped by one bad architecture.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig

from tfnas import results
from tfnas.callbacks import TrainingFreeScores
from tfnas.schema import ConfigError, ScoreConfig, metric_names, validate
from tfnas.scoring import registry
from tfnas.systems.scoring import ScoringSystem
from tfnas.tasks.loop import ArchitectureJob, config_choice, fmt, run_job
from tfnas.tasks.runtime import make_loggers, make_trainer, setup_runtime, to_container

log = logging.getLogger("tfnas.score")

#: Scores shown on each progress line, when computed (else the record's first five).
KEY_SCORES = ("hidden_covariance_l1", "head_confidence", "activation_distance", "jacobian_cosine", "num_params")


def sweep_settings(cfg: DictConfig, space: Any, data: Any) -> dict[str, Any]:
    """Everything that changes scores, except the architecture index.

    Launcher, shard, thread and output-path settings are left out, so a rerun
    of the same sweep in another layout finds its records. Paths enter by file
    name only, so moving the data folder keeps the records valid.
    """
    space_cfg = dict(to_container(cfg.space))
    space_cfg.pop("_target_", None)
    if space_cfg.get("benchmark"):
        space_cfg["benchmark"] = Path(str(space_cfg["benchmark"])).name
    return {
        "space": space.name,
        "space_cfg": space_cfg,
        "seed": int(cfg.seed),
        "batch_index": int(cfg.batch_index),
        "data": data.describe(),
        "metrics": sorted(metric_names(cfg.metrics)),
        "paper_compat": bool(cfg.paper_compat),
    }


def scorer(cfg: DictConfig, space: Any, data: Any, log_step: int = 0) -> TrainingFreeScores:
    """The training-free scores of ``cfg`` (metrics, seed, scoring batch ``batch_index``) for ``space``'s family."""
    return TrainingFreeScores(space.family, data.scoring_batch(int(cfg.batch_index)), metric_names(cfg.metrics),
                              seed=int(cfg.seed), paper_compat=bool(cfg.paper_compat), log_step=log_step)


def check_metrics(cfg: DictConfig, space: Any) -> None:
    """``metrics.names`` names at least one metric, each of ``space``'s family: a wrong name is the
    run's fault, not an architecture's, so it fails before any work.

    Raises:
        ConfigError: one line with the valid names for the space, named as the user typed it (``space=nasbench_nlp``).
    """
    names = metric_names(cfg.metrics)
    if not names:
        raise ConfigError(f"metrics.names is empty: name at least one metric "
                          f"(python -m tfnas.metrics {space.name} lists them)")
    try:
        registry.get(space.family, names, space=space.name)
    except KeyError as exc:
        raise ConfigError(exc.args[0]) from None


def check_data(cfg: DictConfig, space: Any) -> None:
    """The scoring data is built for ``space``'s family (its class's ``family``), checked before any work.

    Raises:
        ConfigError: one line naming the data option, its family and the space's default data.
    """
    from hydra.utils import get_class

    family = getattr(get_class(cfg.data._target_), "family", space.family)
    if family != space.family:
        data = config_choice("data") or cfg.data._target_
        raise ConfigError(f"data={data} is scoring data of the {family} family; "
                          f"space={space.name} is the {space.family} family (its default: data={space.name})")


class ScoreJob(ArchitectureJob):
    """Scores a job's architectures at initialization (see the module docstring).

    Raises:
        ConfigError: a metric name the space's family does not know (before any work).
    """

    verb = "score"

    def __init__(self, cfg: DictConfig, space: Any, threads: int):
        super().__init__(cfg, space)
        self.threads = threads
        check_metrics(cfg, space)
        check_data(cfg, space)

    def prepare(self, indices: list[int]) -> dict[str, Any]:
        cfg, space = self.cfg, self.space
        self.data = instantiate(cfg.data, _convert_="all")
        settings = sweep_settings(cfg, space, self.data)
        sweep_hash = results.config_hash(settings)
        self.loggers = make_loggers(cfg.logger, str(Path(cfg.results_dir) / "tensorboard"), space.name,
                                    f"sweep_{sweep_hash}")
        log.info(f"scoring {len(indices)} architecture(s) of {space.name} with {self.threads} thread(s) "
                 f"-> {cfg.results_dir}")
        return settings

    def run_one(self, index: int, settings: dict[str, Any], chash: str) -> results.Record:
        """Score architecture ``index`` and return its record (never raises for the architecture's faults)."""
        cfg, space = self.cfg, self.space
        t0 = time.perf_counter()
        rec = results.Record(space=space.name, arch=index, benchmark_id=None, seed=int(cfg.seed), config_hash=chash)
        rec.settings = dict(settings, arch=index)
        try:
            arch = space[index]
            rec.benchmark_id, rec.truth = arch.benchmark_id, dict(arch.truth)
            model = space.build(arch, seed=int(cfg.seed))
            callback = scorer(cfg, space, self.data, log_step=index)
            trainer = make_trainer(cfg.trainer, self.loggers, [callback])
            system = ScoringSystem(model)
            try:
                trainer.fit(system, train_dataloaders=[])
            finally:
                # The Trainer and the system reference each other: such cycles wait for a full garbage
                # collection, which a large heap gets rarely, so every network would stay alive until
                # then (RSS +1.6 GB over 450 architectures). Taken out of the cycle, it is freed now.
                system.model = None
            result = callback.result
            rec.scores, rec.reasons = result.scores, result.reasons
            rec.extra["score_seconds"] = result.seconds
            rec.extra["device"] = callback.device
            if callback.peak_memory is not None:  # CUDA only: bytes torch allocated at most while scoring
                rec.extra["cuda_peak_bytes"] = callback.peak_memory
            failed = [k for k, r in result.reasons.items() if r.startswith("error:")]
            if result.scores and len(failed) == len(result.scores):
                rec.status, rec.error = "error", result.reasons[failed[0]]
        except Exception as exc:  # recorded, never raised: one architecture must not stop a sweep
            rec.fail(exc)
        rec.seconds = time.perf_counter() - t0
        return rec

    def summary(self, rec: results.Record) -> str:
        # The key scores when computed, else (e.g. a proxies-only sweep) the first few.
        keys = [k for k in KEY_SCORES if k in rec.scores] or list(rec.scores)[:5]
        return " ".join(f"{k}={fmt(rec.scores[k])}" for k in keys)

    def finish(self) -> None:
        for lg in self.loggers:
            lg.finalize("success")


def score(cfg: DictConfig) -> dict[str, int]:
    """Score the configured architecture(s); write one record each under ``results_dir``.

    Returns:
        Counts: ``{"ok", "error", "skipped", "out_of_range"}`` for this job.

    Raises:
        ConfigError: a wrong option value (:func:`tfnas.schema.validate`), ``arch``, ``shard``
            or metric name, before any record is written; in a Hydra single run, an ``arch``
            beyond the space.
    """
    validate(cfg, ScoreConfig)
    threads = setup_runtime(cfg.get("threads"))
    space = instantiate(cfg.space, _convert_="all")
    return run_job(ScoreJob(cfg, space, threads)).counts()
