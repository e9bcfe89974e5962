"""Progress of a sweep: architectures done of how many, the rate and the time left, on every line.

A Hydra multirun runs its jobs in one process (the basic launcher) or in many
(joblib workers, SLURM tasks, Ray workers), so the sweep's progress lives in
two small files of the Hydra sweep folder (``hydra.sweep.dir``), which every
job of the sweep sees:

- ``tfnas_sweep.json`` (:data:`PLAN_FILE`), written once by the launching
  process when the multirun starts (:func:`write_plan`, called by
  :class:`tfnas.hydra_support.SweepSummary`): the start time and each job's
  index overrides (``{"arch": "17"}``, ``{"shard": "3"}``), expanded from the
  sweep's overrides as Hydra's basic sweeper expands them;
- ``tfnas_progress.log`` (:data:`LOG_FILE`): one line per architecture a job
  finished, ``<unix time> <pid> <arch> <status>``, appended with one
  ``O_APPEND`` write (:class:`Tracker`).

A job reads the plan once to count the sweep's architectures inside the space
(a job beyond the space counts 0, a shard its clipped block) and, after each architecture, counts the log's lines: ``k of N``. The
rate is the architectures scored (not those skipped because their record was
there or claimed by another process) per second: after the first one, since
the first one finished (the start-up of Python, torch and Hydra's first batch
does not weigh on it); for the first, since the sweep started. The time
left is the architectures not yet done over that rate. A shard job adds
its own ``k of n``. Without a plan (a single run, another sweeper) the job's
own architectures are the total and its start the start.

A progress line (:meth:`Tracker.step`)::

    [12 of 4000 done | 0.83 arch/s, 1:20:04 left] arch 11 (id 1000011) ok 1.02s hidden_covariance_l1=...
    [212 of 4000 done | shard 2: 12 of 100 | 2.1 s/arch, 2:12:40 left] arch 211 ...

At the end of the multirun :func:`summary` tabulates the log (how many were
scored, failed, skipped, claimed by another process).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

#: The sweep's plan, in the Hydra sweep folder.
PLAN_FILE = "tfnas_sweep.json"
#: One line per finished architecture, in the Hydra sweep folder.
LOG_FILE = "tfnas_progress.log"
#: Overrides that choose a job's architectures (kept in the plan).
INDEX_KEYS = ("arch", "shard", "shard_size")
#: Statuses of architectures that were worked on (count towards the rate).
WORKED = ("ok", "error")


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def plan_jobs(overrides: Iterable[str]) -> list[dict[str, str]]:
    """Each job's index overrides, in Hydra's job order, for the sweep ``overrides`` (``["arch=range(0,4)"]``).

    Expanded by :meth:`BasicSweeper.split_arguments`, as the basic sweeper
    launches them; only :data:`INDEX_KEYS` are kept, as strings (``"null"``
    for a null).

    Raises:
        hydra.errors.HydraException: an override the basic sweeper cannot expand
            (e.g. an interval sweep).
    """
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(overrides))
    (jobs,) = BasicSweeper.split_arguments(parsed, None)
    return [{_key(o): o.split("=", 1)[1] for o in job if _key(o) in INDEX_KEYS} for job in jobs]


def write_plan(sweep_dir: str | os.PathLike, overrides: Iterable[str] | None, started: float | None = None) -> Path:
    """Write the sweep's plan (:data:`PLAN_FILE`) into ``sweep_dir``; ``overrides=None``: the start time only.

    Returns:
        The plan's path.

    Raises:
        OSError: the folder cannot be written.
    """
    from tfnas.results import write_atomic

    plan: dict[str, Any] = {"started": time.time() if started is None else started}
    if overrides is not None:
        plan["jobs"] = plan_jobs(overrides)
    return write_atomic(Path(sweep_dir) / PLAN_FILE, plan)


def read_plan(sweep_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The plan of ``sweep_dir``, or None when there is none (or it cannot be read)."""
    try:
        with open(Path(sweep_dir) / PLAN_FILE) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def read_log(sweep_dir: str | os.PathLike) -> Counter:
    """Finished architectures of the sweep by status (``ok``, ``error``, ``skipped``, ``claimed``)."""
    return _read_log(sweep_dir)[0]


def _read_log(sweep_dir: str | os.PathLike) -> tuple[Counter, float | None]:
    """:func:`read_log` and the time of the first architecture worked on (None before it)."""
    counts, first = Counter(), None
    try:
        with open(Path(sweep_dir) / LOG_FILE) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 4:
                    counts[parts[3]] += 1
                    if first is None and parts[3] in WORKED:
                        first = float(parts[0])
    except OSError:
        pass
    return counts, first


def format_rate(per_second: float) -> str:
    """``0.83 arch/s``, or ``12.0 s/arch`` below 0.1 per second, ``- arch/s`` before the first."""
    if per_second <= 0 or not math.isfinite(per_second):
        return "- arch/s"
    return f"{per_second:.2f} arch/s" if per_second >= 0.1 else f"{1 / per_second:.1f} s/arch"


def format_duration(seconds: float) -> str:
    """``H:MM:SS`` (``D days, H:MM:SS`` beyond a day), ``?`` when unknown."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    days, rest = divmod(int(round(seconds)), 86400)
    h, rest = divmod(rest, 3600)
    text = f"{h}:{rest // 60:02d}:{rest % 60:02d}"
    return f"{days} day{'s' if days > 1 else ''}, {text}" if days else text


@dataclass
class Tracker:
    """Counts one job's architectures and, inside a multirun, the sweep's (see the module docstring).

    Args:
        job_total: the job's architectures.
        label: the job's name on progress lines in shard mode (``"shard 3"``);
            None for a one-architecture job.
        sweep_dir: the Hydra sweep folder of a multirun, else None.
        sweep_total: the sweep's architectures (None: unknown, the job's count stands in).
        started: when the sweep started (unix time); default: now.
    """

    job_total: int
    label: str | None = None
    sweep_dir: Path | None = None
    sweep_total: int | None = None
    started: float = field(default_factory=time.time)
    done: int = 0
    worked: int = 0
    first_worked: float | None = None

    def step(self, arch: int, status: str) -> str:
        """Count architecture ``arch`` as finished with ``status`` and return the progress text.

        ``status``: ``ok`` or ``error`` (worked on), ``skipped`` (record
        there) or ``claimed`` (another process scores it).
        """
        self.done += 1
        self.worked += status in WORKED
        now = time.time()
        if status in WORKED and self.first_worked is None:
            self.first_worked = now
        done, worked, total, first = self.done, self.worked, self.job_total, self.first_worked
        if self.sweep_dir is not None:
            line = f"{now:.3f} {os.getpid()} {arch} {status}\n"
            try:
                fd = os.open(self.sweep_dir / LOG_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
                try:
                    os.write(fd, line.encode())
                finally:
                    os.close(fd)
                counts, first = _read_log(self.sweep_dir)
                done, worked = sum(counts.values()), sum(counts[s] for s in WORKED)
            except OSError:  # progress must never stop the work; this job's counts stand in
                pass
            if self.sweep_total is not None:
                total = self.sweep_total
        # From the first architecture worked on, so that start-up (Python, torch, the first batch's configs)
        # does not weigh on the rate for the rest of the sweep; until the second, from the sweep's start.
        if worked >= 2 and first is not None and now > first:
            rate = (worked - 1) / (now - first)
        else:
            rate = worked / max(now - self.started, 1e-9)
        left = (total - done) / rate if rate > 0 else (0.0 if done >= total else math.inf)
        parts = [f"{done} of {total} done"]
        if self.label is not None and (self.sweep_dir is not None and self.sweep_total is not None):
            parts.append(f"{self.label}: {self.done} of {self.job_total}")
        elif self.label is not None:
            parts[0] = f"{self.label}: {parts[0]}"
        return f"[{' | '.join(parts)} | {format_rate(rate)}, {format_duration(left)} left]"


def summary(sweep_dir: str | os.PathLike, verb: str = "run") -> str | None:
    """One line on a finished sweep from its log, or None when there is no log.

    ``4000 architectures: 3990 scored (3985 ok, 5 error), 10 skipped (record
    there), 0 claimed by another process, in 1:20:04`` (``verb="scored"``).
    """
    counts = read_log(sweep_dir)
    if not counts:
        return None
    plan = read_plan(sweep_dir) or {}
    took = f", in {format_duration(time.time() - plan['started'])}" if "started" in plan else ""
    return (f"{sum(counts.values())} architectures: {counts['ok'] + counts['error']} {verb} ({counts['ok']} ok, "
            f"{counts['error']} error), {counts['skipped']} skipped (record there), {counts['claimed']} claimed by "
            f"another process{took}")
