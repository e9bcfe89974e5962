"""The scoring task behind ``score.py``: score architectures at initialization.

One call scores one architecture (``arch=i``) or one shard of them
(``shard=k shard_size=n`` scores arch k·n … k·n+n−1). For each architecture:
skip if its record exists (resume), build the seeded untrained model, run
:class:`~tfnas.callbacks.TrainingFreeScores` inside ``Trainer.fit(max_steps=0)``,
and write one record atomically, ``status: error`` with the error text if
anything failed. Exceptions never escape, so a Hydra multirun is never
stopped by one bad architecture.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig

from tfnas import results
from tfnas.callbacks import TrainingFreeScores
from tfnas.scoring import registry
from tfnas.systems.scoring import ScoringSystem
from tfnas.tasks.runtime import make_loggers, make_trainer, setup_runtime, to_container

log = logging.getLogger("tfnas.score")

#: Scores shown on each progress line, when computed (else the record's first five).
KEY_SCORES = ("hidden_covariance_l1", "head_confidence", "activation_distance", "jacobian_cosine", "num_params")

_warned_out_of_range = False


def arch_indices(cfg: DictConfig, size: int) -> list[int]:
    """The architectures this job scores: ``[arch]`` or the shard's block, clipped to the space."""
    if cfg.get("shard") is not None:
        n, shard = _int_option(cfg, "shard_size"), _int_option(cfg, "shard")
        if n < 1:
            raise ValueError(f"shard_size must be >= 1, got {n}")
        if shard < 0:
            raise ValueError(f"shard must be >= 0, got {shard}")
        start = shard * n
        return list(range(start, min(start + n, size)))
    arch = _int_option(cfg, "arch")
    if arch < 0:
        raise ValueError(f"arch must be >= 0, got {arch}")
    return [arch] if arch < size else []


def _int_option(cfg: DictConfig, key: str) -> int:
    try:
        return int(cfg[key])
    except (TypeError, ValueError):
        raise ValueError(f"{key} must be an integer, got {cfg[key]!r}") from None


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
        "metrics": sorted(cfg.metrics.names),
        "paper_compat": bool(cfg.paper_compat),
    }


def _fmt(v: float) -> str:
    return "nan" if isinstance(v, float) and math.isnan(v) else f"{v:.6g}"


def score_one(cfg: DictConfig, space: Any, data: Any, index: int, settings: dict, loggers: list) -> results.Record:
    """Score architecture ``index`` and return its record (never raises for the architecture's faults)."""
    full = dict(settings, arch=index)
    chash = results.config_hash(full)
    t0 = time.perf_counter()
    rec = results.Record(space=space.name, arch=index, benchmark_id=None, seed=int(cfg.seed), config_hash=chash)
    rec.settings = full
    try:
        arch = space[index]
        rec.benchmark_id, rec.truth = arch.benchmark_id, dict(arch.truth)
        model = space.build(arch, seed=int(cfg.seed))
        callback = TrainingFreeScores(
            space.family,
            data.scoring_batch(int(cfg.batch_index)),
            cfg.metrics.names,
            seed=int(cfg.seed),
            paper_compat=bool(cfg.paper_compat),
            log_step=index,
        )
        trainer = make_trainer(cfg.trainer, loggers, [callback])
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
        failed = [k for k, r in result.reasons.items() if r.startswith("error:")]
        if result.scores and len(failed) == len(result.scores):
            rec.status, rec.error = "error", result.reasons[failed[0]]
    except Exception as exc:  # recorded, never raised: one architecture must not stop a sweep
        rec.fail(exc)
    rec.seconds = time.perf_counter() - t0
    return rec


def score(cfg: DictConfig) -> dict[str, Any]:
    """Score the configured architecture(s); write one record each under ``results_dir``.

    Returns:
        Counts: ``{"ok", "error", "skipped", "out_of_range"}`` for this job.
    """
    global _warned_out_of_range
    threads = setup_runtime(cfg.get("threads"))
    space = instantiate(cfg.space, _convert_="all")
    data = instantiate(cfg.data, _convert_="all")
    counts = {"ok": 0, "error": 0, "skipped": 0, "out_of_range": 0}
    # A wrong metric name is the sweep's fault, not an architecture's: fail before scoring any.
    try:
        registry.get(space.family, cfg.metrics.names)
    except KeyError as exc:
        raise ValueError(exc.args[0]) from None
    indices = arch_indices(cfg, len(space))
    if not indices:
        counts["out_of_range"] = 1
        if not _warned_out_of_range:  # one message per process, however many jobs are out of range
            what = f"shard={cfg.shard} (shard_size={cfg.shard_size})" if cfg.get("shard") is not None else f"arch={cfg.arch}"
            log.warning(
                f"{what} is beyond the space: {space.name} has {len(space)} architectures (arch=0..{len(space) - 1}); "
                "nothing to score. Further out-of-range jobs of this sweep are skipped silently."
            )
            _warned_out_of_range = True
        return counts
    settings = sweep_settings(cfg, space, data)
    sweep_hash = results.config_hash(settings)
    loggers = make_loggers(cfg.logger, str(Path(cfg.results_dir) / "tensorboard"), space.name, f"sweep_{sweep_hash}")
    log.info(f"scoring {len(indices)} architecture(s) of {space.name} with {threads} thread(s) -> {cfg.results_dir}")
    t_start = time.perf_counter()
    for index in indices:
        chash = results.config_hash(dict(settings, arch=index))
        if results.exists(cfg.results_dir, space.name, index, chash) and not cfg.get("overwrite", False):
            counts["skipped"] += 1
            log.info(f"arch {index}: record exists, skipped")
            continue
        rec = score_one(cfg, space, data, index, settings, loggers)
        results.save(rec, cfg.results_dir)
        counts[rec.status] += 1
        # The key scores when computed, else (e.g. a proxies-only sweep) the first few.
        keys = [k for k in KEY_SCORES if k in rec.scores] or list(rec.scores)[:5]
        shown = " ".join(f"{k}={_fmt(rec.scores[k])}" for k in keys)
        ident = f"arch {index} (id {rec.benchmark_id})" if rec.benchmark_id is not None else f"arch {index} (generated)"
        if rec.status == "ok":
            log.info(f"{ident} ok {rec.seconds:.2f}s {shown}")
        else:
            log.error(f"{ident} ERROR {rec.seconds:.2f}s {rec.error}")
    for lg in loggers:
        lg.finalize("success")
    log.info(
        f"done: {counts['ok']} ok, {counts['error']} error, {counts['skipped']} skipped (already scored) "
        f"in {time.perf_counter() - t_start:.1f}s"
    )
    return counts
