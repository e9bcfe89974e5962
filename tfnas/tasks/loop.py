"""One loop for every task that writes one record per architecture (``score.py``, ``train.py``).

A task describes its work as an :class:`ArchitectureJob`; :func:`run_job`
does the rest, the same way for every task and model family:

1. the job's architectures (:func:`job_indices`): ``arch=i``, or
   ``shard=k shard_size=n`` for the block ``k·n … k·n+n−1``, clipped to the
   space. In a multirun, a job entirely beyond the space logs one warning per
   process and runs nothing: a range wider than the space is not an error. A
   single run (``python score.py arch=99999``) beyond the space is one: a
   :class:`~tfnas.schema.ConfigError`;
2. :meth:`ArchitectureJob.prepare`: what the job's architectures share (data,
   loggers) and the settings that enter every record's config hash;
3. for each architecture, in order: its config hash and record path; skipped
   when a finished record is there (resume, unless ``overwrite=true``; a kept
   error record is a warning that says how to run it again);
   skipped when another process holds its claim (:func:`tfnas.results.claim`:
   two sweeps into one folder share the work instead of doubling it); else,
   under the claim, :meth:`ArchitectureJob.run_one` (which never raises for
   the architecture's own faults) and the record written atomically. Every
   architecture, run or skipped, gives one progress line: done of how many
   in the sweep, the rate and the time left (:mod:`tfnas.tasks.progress`);
4. the job's counts (:class:`JobResult`).

The trainings also share :func:`resume_checkpoint` (which checkpoint a run
resumes from), :func:`run_dir` (where a run's checkpoints go) and
:func:`trainer_settings` (the Trainer settings that enter a record's hash).
"""

from __future__ import annotations

import logging
import math
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from omegaconf import DictConfig

from tfnas import results
from tfnas.schema import ConfigError, ScoreConfig, check_value
from tfnas.tasks import progress
from tfnas.tasks.runtime import to_container

#: Trainer settings that change a trained model, per model family (part of the record's config hash).
#: NAS-Bench-NLP trains for the Trainer's epochs and batch limits; the NAS-Bench-BERT stages take their
#: lengths from ``electra.optim.max_steps`` and the GLUE epochs, hashed with those settings. A new family
#: adds its row; changing a row changes the hash of every record of that family.
RESULT_TRAINER_KEYS: dict[str, tuple[str, ...]] = {
    "rnn": ("max_epochs", "max_steps", "limit_train_batches", "limit_val_batches", "precision"),
    "bert": ("precision", "gradient_clip_val", "accumulate_grad_batches"),
    "gpt": ("max_steps", "limit_train_batches", "limit_val_batches", "precision", "gradient_clip_val"),
}

_warned_out_of_range = False


@dataclass
class JobResult:
    """What one job did.

    Attributes:
        ok, error: architectures run, by record status.
        skipped: architectures whose finished record was already there.
        claimed: architectures skipped because another process was running them (held their claim).
        out_of_range: 1 when the job's architectures are all beyond the space, else 0.
        records: ``(path, record dict)`` of every architecture of the job, run or skipped, in order.
    """

    ok: int = 0
    error: int = 0
    skipped: int = 0
    claimed: int = 0
    out_of_range: int = 0
    records: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """``{"ok", "error", "skipped", "claimed", "out_of_range"}``."""
        return {"ok": self.ok, "error": self.error, "skipped": self.skipped, "claimed": self.claimed,
                "out_of_range": self.out_of_range}

    def counts_with_last_record(self) -> dict[str, Any]:
        """:meth:`counts` plus ``record`` (the path of the job's last record, None when it has none) and
        ``truth`` (that record's ground truth)."""
        path, last = self.records[-1] if self.records else (None, {})
        return {**self.counts(), "record": None if path is None else str(path), "truth": last.get("truth", {})}


class ArchitectureJob(ABC):
    """One task's work on one job's architectures; :func:`run_job` drives it.

    Args:
        cfg: the composed task config (``arch``, ``shard``, ``shard_size``,
            ``overwrite``, ``results_dir`` and the task's own keys).
        space: the instantiated search space.

    Attributes:
        verb: what the task does to an architecture, in messages ("score", "train").
        report_path: end each progress line with the record's path (single
            long runs) rather than not (sweeps of many short ones).
    """

    verb: ClassVar[str] = "run"
    report_path: ClassVar[bool] = False

    def __init__(self, cfg: DictConfig, space: Any):
        self.cfg, self.space = cfg, space

    @abstractmethod
    def prepare(self, indices: list[int]) -> dict[str, Any]:
        """Set up what the job's architectures share and return the hashed settings.

        Called once, before the first architecture, and only when the job has
        architectures to run or skip.

        Returns:
            Everything that changes a record, except the architecture index
            (:func:`tfnas.results.config_hash` of it plus ``arch`` names the record).
        """

    @abstractmethod
    def run_one(self, index: int, settings: dict[str, Any], chash: str) -> results.Record:
        """Run architecture ``index`` and return its record; the architecture's own faults become an error record."""

    def is_finished(self, old: dict[str, Any]) -> bool:
        """Whether an existing record of the same configuration means the work is done (default: any record)."""
        return True

    def summary(self, rec: results.Record) -> str:
        """The details of an ``ok`` record on its progress line."""
        return ""

    def finish(self) -> None:
        """Called after the job's last architecture (e.g. to close loggers)."""


def job_indices(cfg: DictConfig, size: int) -> list[int]:
    """The architectures of this job: ``[arch]``, or the shard's block, clipped to a space of ``size``.

    The values are checked against the score schema (:func:`tfnas.schema.check_value`),
    the one home of their ranges, also for configs that did not come through Hydra.

    Raises:
        ConfigError: a non-integer ``arch``, ``shard`` or ``shard_size``, a
            negative ``arch`` or ``shard``, or ``shard_size`` < 1.
    """
    return select(cfg.get("arch"), cfg.get("shard"), cfg.get("shard_size"), size)


def select(arch: Any, shard: Any, shard_size: Any, size: int) -> list[int]:
    """:func:`job_indices` from the option values (``shard`` None: ``[arch]``, else the shard's block).

    Raises:
        ConfigError: as :func:`job_indices`.
    """
    if shard is not None:
        for key, value in (("shard", shard), ("shard_size", shard_size)):
            check_value(ScoreConfig, key, value)
        start = shard * shard_size
        return list(range(start, min(start + shard_size, size)))
    check_value(ScoreConfig, "arch", arch)
    return [arch] if arch < size else []


def single_run() -> bool:
    """Whether this process runs a Hydra single run (not a multirun job, not a plain Python call)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.RUN


def run_job(job: ArchitectureJob) -> JobResult:
    """Run ``job`` on its architectures: resume, run, save, report (see the module docstring).

    Raises:
        ConfigError: a wrong ``arch``/``shard`` value (see :func:`job_indices`),
            or, in a Hydra single run, architectures beyond the space.
        Whatever :meth:`ArchitectureJob.prepare` raises for the job's settings.
    """
    global _warned_out_of_range
    cfg, space = job.cfg, job.space
    log = logging.getLogger(f"tfnas.{job.verb}")
    out = JobResult()
    indices = job_indices(cfg, len(space))
    if not indices:
        out.out_of_range = 1
        what = (f"shard={cfg.shard} (shard_size={cfg.shard_size})" if cfg.get("shard") is not None
                else f"arch={cfg.arch}")
        beyond = f"{what} is beyond the space: {space.name} has {len(space)} architectures (arch=0..{len(space) - 1})"
        if single_run():
            raise ConfigError(f"{beyond}; nothing to {job.verb}")
        if not _warned_out_of_range:  # one message per process, however many jobs are out of range
            log.warning(f"{beyond}; nothing to {job.verb}. Further out-of-range jobs of this sweep are skipped silently.")
            _warned_out_of_range = True
        return out
    settings = job.prepare(indices)
    tracker = _tracker(cfg, len(space), len(indices))
    t_start = time.perf_counter()
    overwrite = bool(cfg.get("overwrite", False))
    for index in indices:
        chash = results.config_hash(dict(settings, arch=index))
        path = results.record_path(cfg.results_dir, space.name, index, chash)
        if not overwrite and _finished(job, cfg, space, index, chash, path, out, log):
            _log_skip(log, f"{tracker.step(index, 'skipped')} arch {index}: record {path} exists", out.records[-1][1])
            continue
        with results.claim(path) as claim:
            if not claim.held:
                out.claimed += 1
                log.info(f"{tracker.step(index, 'claimed')} arch {index}: claimed by {claim.holder} "
                         f"({results.claim_path(path).name}), skipped")
                continue
            # The claim's last holder may have finished the record just before this process took it.
            if not overwrite and _finished(job, cfg, space, index, chash, path, out, log, quiet=True):
                _log_skip(log, f"{tracker.step(index, 'skipped')} arch {index}: record {path} was just written by "
                          "another process", out.records[-1][1])
                continue
            if job.report_path:
                log.info(f"arch {index}: record -> {path}")
            rec = job.run_one(index, settings, chash)
            results.save(rec, cfg.results_dir)
        out.records.append((path, asdict(rec)))
        setattr(out, rec.status, getattr(out, rec.status) + 1)
        _report(job, rec, path, tracker.step(index, rec.status))
    job.finish()
    if len(indices) > 1:  # a one-architecture job's progress line says it all
        log.info(f"done: {out.ok} ok, {out.error} error, {out.skipped} skipped (already done), "
                 f"{out.claimed} claimed by another process in {time.perf_counter() - t_start:.1f}s")
    return out


def _finished(job: ArchitectureJob, cfg: DictConfig, space: Any, index: int, chash: str, path: Path,
              out: JobResult, log: logging.Logger, quiet: bool = False) -> bool:
    """Whether a finished record of ``index`` is there (then counted as skipped in ``out``)."""
    if not results.exists(cfg.results_dir, space.name, index, chash):
        return False
    old = results.load(path)
    if job.is_finished(old):
        out.skipped += 1
        out.records.append((path, old))
        return True
    if not quiet:
        log.info(f"arch {index}: record {path} is an error record ({old.get('error')}); running it again")
    return False


#: How to run an architecture whose error record a rerun skips, as README.md says it (Scoring, Resuming at scale).
RETRY_HINT = "overwrite=true runs it again (a sweep's: python -m tfnas.sweep missing --retry-errors lists them)"


def _log_skip(log: logging.Logger, line: str, old: dict[str, Any]) -> None:
    """Log ``line`` for a skipped architecture: ``..., skipped``, or, when the record it keeps is an
    error record, a warning that says so, with its error and :data:`RETRY_HINT`."""
    if old.get("status", "ok") == "ok":
        log.info(f"{line}, skipped")
    else:
        error = " ".join(str(old.get("error") or f"status {old.get('status')}").split())
        log.warning(f"{line} as an error record ({error}), skipped: {RETRY_HINT}")


#: (sweep folder, space size, default selection) -> (start time, architectures) of the sweep, read once per process.
_sweeps: dict[tuple, tuple[float, int | None]] = {}


def _tracker(cfg: DictConfig, size: int, job_total: int) -> progress.Tracker:
    """The progress tracker of a job of ``job_total`` architectures (inside a Hydra multirun: of its sweep)."""
    label = f"shard {cfg.shard}" if cfg.get("shard") is not None else None
    sweep_dir = _multirun_dir()
    if sweep_dir is None:
        return progress.Tracker(job_total, label)
    defaults = {k: cfg.get(k) for k in progress.INDEX_KEYS}
    key = (str(sweep_dir), size, tuple(defaults.values()))
    if key not in _sweeps:
        plan = progress.read_plan(sweep_dir) or {}
        total = None
        if "jobs" in plan:
            def count(job: dict[str, str]) -> int:
                sel = {k: _plan_value(job[k]) if k in job else defaults[k] for k in progress.INDEX_KEYS}
                try:
                    return len(select(sel["arch"], sel["shard"], sel["shard_size"], size))
                except (ValueError, TypeError):  # a wrong value: that job fails on its own, scoring nothing
                    return 0
            total = sum(count(job) for job in plan["jobs"])
        _sweeps[key] = (float(plan.get("started", time.time())), total)
    started, total = _sweeps[key]
    return progress.Tracker(job_total, label, sweep_dir=sweep_dir, sweep_total=total, started=started)


def _plan_value(text: str) -> Any:
    """An override's value as the plan keeps it (``"17"``, ``"null"``) back as a config value (17, None)."""
    if text in ("null", "None", "~"):
        return None
    try:
        return int(text)
    except ValueError:
        return text


def _multirun_dir() -> Path | None:
    """The Hydra sweep folder when this job is part of a multirun, else None."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    try:
        hc = HydraConfig.get()
    except ValueError:  # not inside a Hydra job (plain Python use, tests)
        return None
    return Path(str(hc.sweep.dir)) if hc.mode == RunMode.MULTIRUN else None


def _report(job: ArchitectureJob, rec: results.Record, path: Path, where_in_sweep: str) -> None:
    log = logging.getLogger(f"tfnas.{job.verb}")
    ident = f"arch {rec.arch} (id {rec.benchmark_id})" if rec.benchmark_id is not None else f"arch {rec.arch} (generated)"
    where = f" -> {path}" if job.report_path else ""
    if rec.status == "ok":
        log.info(f"{where_in_sweep} {ident} ok {rec.seconds:.2f}s {job.summary(rec)}{where}")
    else:
        log.error(f"{where_in_sweep} {ident} ERROR {rec.seconds:.2f}s {rec.error}{where}")


def fmt(value: Any, spec: str = ".6g") -> str:
    """A score or loss for a progress line: ``nan`` for NaN, else ``format(value, spec)``."""
    return "nan" if isinstance(value, float) and math.isnan(value) else format(value, spec)


# ---------------------------------------------------------------------------- trainings


def trainer_settings(trainer_cfg: Any, family: str) -> dict[str, Any]:
    """The result-changing Trainer settings of ``trainer_cfg`` for ``family`` (see :data:`RESULT_TRAINER_KEYS`)."""
    t = dict(to_container(trainer_cfg) or {})
    return {k: t.get(k) for k in RESULT_TRAINER_KEYS[family]}


def config_choice(group: str) -> str | None:
    """The option of config group ``group`` chosen for this run (``experiment`` → ``quick``), or None
    (none chosen, or not under Hydra)."""
    from hydra.core.hydra_config import HydraConfig

    try:
        choice = HydraConfig.get().runtime.choices.get(group)
    except ValueError:
        return None
    return None if choice in (None, "null") else str(choice)


def announce_training(cfg: DictConfig, space_name: str, protocol: str, full: str, hint: str = "") -> None:
    """Log, before a training starts, which protocol it runs and where its records and checkpoints go.

    Args:
        cfg: the train config.
        space_name: the space's name (the records' and checkpoints' subfolder).
        protocol: what the configured training does (``"50 epoch(s) of every training window"``).
        full: the name of the benchmark's protocol (``"NAS-Bench-NLP's full 50-epoch protocol"``), said
            when no ``experiment`` is chosen, followed by ``hint`` (``"hours per epoch on a CPU"``).
    """
    log = logging.getLogger("tfnas.train")
    exp = config_choice("experiment")
    which = f"experiment={exp} (conf/experiment/{exp}.yaml)" if exp else f"{full}, as no experiment= is chosen"
    log.info(f"protocol: {which}: {protocol}" + (f" ({hint})" if hint and not exp else ""))
    log.info(f"records -> {Path(str(cfg.results_dir)) / space_name}/arch_<i>_<hash>.json; "
             f"checkpoints -> {run_dir(cfg, space_name, 0, 'x').parent}/arch_<i>_<hash>/")


def fresh_start(cfg: DictConfig) -> bool:
    """Whether every stage starts afresh: ``overwrite=true`` or ``resume=false``."""
    return bool(cfg.get("overwrite", False)) or not bool(cfg.get("resume", True))


def run_dir(cfg: DictConfig, space_name: str, index: int, key: str) -> Path:
    """``<checkpoint.dir>/<space>/arch_<i>_<key>``: where one training run keeps its checkpoints.

    ``checkpoint.dir`` defaults to ``<results_dir>/checkpoints``; ``key`` is the
    hash of the settings the run's checkpoints depend on.
    """
    root = cfg.checkpoint.get("dir") if cfg.get("checkpoint") else None
    root = Path(str(root)) if root else Path(str(cfg.results_dir)) / "checkpoints"
    return root / space_name / f"arch_{index:06d}_{key}"


def resume_checkpoint(cfg: DictConfig, folder: Path, explicit: bool = True) -> str | None:
    """The checkpoint a training resumes from, or None for a fresh start.

    ``ckpt_path`` when set (and ``explicit``); else ``folder/last.ckpt`` when
    it exists, unless :func:`fresh_start`.

    Raises:
        FileNotFoundError: ``ckpt_path`` names no file.
    """
    if explicit and cfg.get("ckpt_path"):
        p = Path(str(cfg.ckpt_path)).expanduser()
        if not p.is_file():
            raise FileNotFoundError(f"ckpt_path={cfg.ckpt_path}: no such checkpoint file")
        return str(p)
    last = folder / "last.ckpt"
    return str(last) if last.is_file() and not fresh_start(cfg) else None
