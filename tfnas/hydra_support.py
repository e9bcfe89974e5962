"""Hydra glue: config resolvers and the end-of-sweep callback.

Importing this module registers the resolvers the configs use:

- ``tfnas_job``: names each multirun job's folder by architecture
  (``arch_12``) or shard (``shard_3``) instead of Hydra's job number.
- ``tfnas_launch_dir``: the directory the command was started from, pinned
  (cached) in the launching process. Hydra copies the launching config's
  resolver cache into every job's config, so a worker that runs in another
  directory (a Ray worker, ``hydra.job.chdir=true``) still gets the
  launcher's directory rather than its own.
- ``tfnas_abspath``: ``path`` made absolute against a base directory
  (``${tfnas_abspath:${paths.results_dir},${tfnas_launch_dir:}}``), so every
  worker of a sweep writes to the same results folder and reads the same
  data folder (``paths.absolute_data_dir``).
- ``tfnas_repo_data_dir``: ``shared/data`` beside the repository, the data
  folder when ``$TFNAS_DATA_DIR`` is not set (:func:`tfnas.paths.repo_data_dir`).
- ``tfnas_analysis_dir``: the default output folder of ``analyze.py``
  (:func:`tfnas.paths.analysis_dir`).
- ``tfnas_threads``: the default torch thread count of one job, derived from
  the chosen Hydra launcher so that parallel jobs do not oversubscribe the
  cores (see :func:`default_threads`).
- ``tfnas_gpu``: Lightning ``devices`` spreading the jobs of a multirun over
  the GPUs of one machine, ``'trainer.devices=${tfnas_gpu:}'`` (see
  :func:`gpu_for_job`).
- ``tfnas_concat``: the concatenation of lists (``conf/metrics/all_<family>.yaml``:
  the family's metrics, then the zero-cost proxies).
- ``tfnas_options``: the ``--help`` lines of a task's options
  (:func:`tfnas.schema.options_help`), for ``conf/hydra/help/<task>.yaml``.

Importing it also registers the typed schemas of the tasks in Hydra's
ConfigStore (:mod:`tfnas.schema`). :func:`command_line` and
:func:`one_line_errors` turn a user's mistakes into one line on stderr;
:class:`CheckInputs` does it for a task's inputs before Hydra creates its run folder.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Any, Callable

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from tfnas.paths import analysis_dir, repo_data_dir
from tfnas.schema import ConfigError, check_overrides, options_help
from tfnas.tasks.runtime import available_cores

log = logging.getLogger("tfnas")


def job_name(shard: Any, arch: Any) -> str:
    """Folder name of one job: ``shard_<k>`` in shard mode, else ``arch_<i>``."""
    return f"shard_{shard}" if shard is not None else f"arch_{arch}"


def launch_dir() -> str:
    """The current directory as an absolute path (cached per config by the resolver)."""
    return os.getcwd()


def absolute_path(path: Any, base: Any) -> str:
    """``path`` (``~`` expanded) if absolute, else ``base/path``; no symlink resolution.

    Raises:
        ValueError: ``path`` is empty or None (a missing results or data folder
            setting would otherwise silently mean the current directory).
    """
    if path is None or str(path) == "":
        raise ValueError("empty path: set paths.results_dir / paths.data_dir to a folder")
    p = Path(str(path)).expanduser()
    return str(p if p.is_absolute() else Path(str(base)) / p)


def _launcher_cfg() -> DictConfig | None:
    """``hydra.launcher`` of the running job, or None outside a Hydra job."""
    from hydra.core.hydra_config import HydraConfig

    try:
        return HydraConfig.get().launcher
    except ValueError:  # HydraConfig not set: plain Python use of the task
        return None


def joblib_workers(n_jobs: Any, cores: int) -> int:
    """How many processes joblib runs at once for ``n_jobs`` on ``cores`` cores.

    joblib's convention: ``n_jobs >= 1`` is taken as is; ``-1`` means every
    core, ``-2`` all but one, and so on (``cores + 1 + n_jobs``).

    Raises:
        ValueError: ``n_jobs`` is 0 or not an integer.
    """
    n = int(n_jobs)
    if n == 0:
        raise ValueError("hydra.launcher.n_jobs=0 is not valid: use a positive count or -1 for every core")
    return n if n > 0 else max(1, cores + 1 + n)


def default_threads(launcher: Any = None, cores: int | None = None, env: dict | None = None) -> int:
    """Torch threads for one scoring job, so that concurrent jobs share the cores.

    Order: ``$TFNAS_THREADS`` if set; else, by the Hydra launcher of the job:

    - ``joblib``: ``cores // workers`` (``n_jobs=-1``: one thread per job);
    - ``submitit``: ``cpus_per_task`` when set, else every core of the
      task's CPU set on SLURM (which confines a task to its allocation) and
      1 for ``submitit_local`` (whose jobs all start at once, unpinned);
    - ``ray``: ``ray.remote.num_cpus`` when set, else 1 (Ray's default
      reservation per task);
    - the basic launcher (one job at a time) or no Hydra: every core.

    Args:
        launcher: the ``hydra.launcher`` config (default: the running job's).
        cores: cores this process may use (default: its affinity mask).
        env: environment (default: ``os.environ``).

    Returns:
        A thread count >= 1.

    Raises:
        ValueError: ``$TFNAS_THREADS`` is not a positive integer.
    """
    env = os.environ if env is None else env
    value = env.get("TFNAS_THREADS", "")
    if value.strip():
        try:
            n = int(value)
        except ValueError:
            n = 0
        if n < 1:
            raise ValueError(f"TFNAS_THREADS must be a positive integer, got {value!r}")
        return n
    cores = available_cores() if cores is None else cores
    launcher = _launcher_cfg() if launcher is None else launcher
    target = str(launcher.get("_target_", "")) if launcher is not None else ""
    if "joblib" in target:
        return max(1, cores // joblib_workers(launcher.get("n_jobs", -1), cores))
    if "submitit" in target:
        cpus = launcher.get("cpus_per_task")
        if cpus:
            return int(cpus)
        # SLURM confines a task to its CPUs; local jobs all start at once on every core.
        return 1 if target.endswith("LocalLauncher") else cores
    if "hydra_ray_launcher" in target:
        remote = (launcher.get("ray") or {}).get("remote") or {}
        return max(1, int(remote.get("num_cpus") or 1))
    return cores


def gpu_for_job(job_num: int, n_gpus: int) -> int | list[int]:
    """Lightning ``devices`` for job ``job_num`` on a machine with ``n_gpus`` visible GPUs.

    With several GPUs, job k gets GPU ``k mod n_gpus`` (``[index]``), so
    parallel jobs of one machine (joblib) spread over all its GPUs instead of
    all landing on the first; otherwise ``1`` (one device of whatever
    accelerator Lightning picks).
    """
    return [int(job_num) % n_gpus] if n_gpus > 1 else 1


def job_devices() -> int | list[int]:
    """:func:`gpu_for_job` for the running Hydra job (job number 0 outside a multirun)."""
    import torch

    from hydra.core.hydra_config import HydraConfig

    try:
        num = HydraConfig.get().job.get("num") or 0
    except ValueError:
        num = 0
    return gpu_for_job(int(num), torch.cuda.device_count())


def _register(name: str, fn: Any, use_cache: bool = False) -> None:
    if not OmegaConf.has_resolver(name):
        OmegaConf.register_new_resolver(name, fn, use_cache=use_cache)


_register("tfnas_job", job_name)
_register("tfnas_launch_dir", launch_dir, use_cache=True)
_register("tfnas_abspath", absolute_path)
_register("tfnas_repo_data_dir", lambda: str(repo_data_dir()))
_register("tfnas_analysis_dir", lambda results_dir: analysis_dir(
    results_dir if isinstance(results_dir, str) else OmegaConf.to_container(results_dir)))
_register("tfnas_threads", lambda: default_threads())
_register("tfnas_gpu", job_devices)
_register("tfnas_options", options_help)
_register("tfnas_concat", lambda *lists: OmegaConf.create([x for items in lists for x in items]))


def _exit_with_one_line(exc: BaseException) -> None:
    print(f"{Path(sys.argv[0]).name}: {exc}", file=sys.stderr, flush=True)
    sys.exit(1)


def command_line(schema: type) -> Callable[[Callable], Callable]:
    """Decorate a ``@hydra.main`` entry so that its command line is checked against ``schema`` first.

    A wrong value of a schema option (:func:`tfnas.schema.check_overrides`)
    ends the command before Hydra composes anything, with one line on stderr
    (``score.py: arch must be an integer >= 0, got abc``) and exit status 1;
    with ``HYDRA_FULL_ERROR=1`` the :class:`~tfnas.schema.ConfigError`
    propagates with its traceback. Put it above ``@hydra.main``.
    """

    def wrap(entry: Callable) -> Callable:
        @functools.wraps(entry)
        def run(*args: Any, **kwargs: Any) -> Any:
            if not args and not kwargs:  # the command line, not a config handed in
                try:
                    check_overrides(schema, sys.argv[1:])
                except ConfigError as exc:
                    if os.environ.get("HYDRA_FULL_ERROR") == "1":
                        raise
                    _exit_with_one_line(exc)
            return entry(*args, **kwargs)

        return run

    return wrap


def one_line_errors(*errors: type[BaseException]) -> Callable[[Callable], Callable]:
    """Decorate a Hydra task function so that ``errors`` end the command with one line, not a traceback.

    The message goes to stderr as ``<script>: <message>`` and the process
    exits with status 1; with ``HYDRA_FULL_ERROR=1`` the exception propagates
    with its traceback, as Hydra does for every other error. Put it under
    ``@hydra.main``.
    """

    def wrap(task: Callable) -> Callable:
        @functools.wraps(task)
        def run(cfg: DictConfig) -> Any:
            try:
                return task(cfg)
            except errors as exc:
                if os.environ.get("HYDRA_FULL_ERROR") == "1":
                    raise
                _exit_with_one_line(exc)

        return run

    return wrap


#: The sweeper whose job list :func:`tfnas.tasks.progress.plan_jobs` reproduces.
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
#: Jobs per launch (``hydra.sweeper.max_batch_size``) by launcher; see :func:`max_batch_size`.
BATCH_BASIC, BATCH_ARRAY = 20, 1000


def max_batch_size(launcher: Any, cores: int | None = None) -> int:
    """Jobs Hydra's basic sweeper hands the launcher ``launcher`` at once (``hydra.sweeper.max_batch_size``).

    Before launching a batch the sweeper composes the config of every job of
    it (about 0.1 s each on a 2-core machine), silently, so a batch of 1,000
    jobs keeps a sweep quiet for minutes. Hence:

    - the basic launcher (one job after the other, in this process):
      :data:`BATCH_BASIC` (the first job starts within seconds);
    - joblib: ten jobs per worker process (``n_jobs``), so that the workers
      stay busy to the end of each batch;
    - submitit (SLURM), Ray and any other: :data:`BATCH_ARRAY`, one SLURM
      job array per batch, below SLURM's usual ``MaxArraySize`` of 1,001.

    Args:
        launcher: the ``hydra.launcher`` config.
        cores: cores of this machine (default: this process's affinity mask).
    """
    target = str(launcher.get("_target_", "")) if launcher is not None else ""
    if target.endswith("BasicLauncher"):
        return BATCH_BASIC
    if "joblib" in target:
        cores = available_cores() if cores is None else cores
        return min(BATCH_ARRAY, 10 * joblib_workers(launcher.get("n_jobs", -1), cores))
    return BATCH_ARRAY


_register("tfnas_max_batch_size", max_batch_size)


class CheckInputs(Callback):
    """Runs a task's input check before Hydra creates the run's folder, so that a wrong input leaves nothing behind.

    ``check`` is the dotted name of a function of the task's config (without
    its ``hydra`` node), e.g. ``tfnas.tasks.analyze.check_inputs``
    (``conf/analyze.yaml``: ``hydra.callbacks``). A ``ValueError`` (a
    :class:`~tfnas.schema.ConfigError`, an input error) or ``OSError`` (a
    missing folder) it raises ends the command with one line on stderr and
    exit status 1, before ``hydra.run.dir`` exists; with ``HYDRA_FULL_ERROR=1``
    its traceback is printed instead of the line. Other exceptions Hydra turns
    into a warning, and the task meets them again. Single runs only
    (``on_run_start``): the jobs of a multirun are checked by the task itself.
    """

    def __init__(self, check: str) -> None:
        self.check = check

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        import copy

        from hydra.utils import get_method
        from omegaconf import open_dict, read_write

        task_cfg = copy.deepcopy(config)
        with read_write(task_cfg), open_dict(task_cfg):
            del task_cfg["hydra"]  # as Hydra hands it to the task; its hydra.runtime is not set yet
        try:
            get_method(self.check)(task_cfg)
        except (ValueError, OSError) as exc:
            if os.environ.get("HYDRA_FULL_ERROR") == "1":  # Hydra would turn a callback's exception into a warning
                traceback.print_exc()
                sys.exit(1)
            _exit_with_one_line(exc)


class SweepSummary(Callback):
    """Pins the output paths and plans the progress at the start of a multirun; tabulates the records at its end.

    At the start (in the launching process) the results folder is resolved
    once, so ``tfnas_launch_dir`` is cached before the jobs' configs are
    made: every job, whatever its working directory, writes to the same
    folder; and the sweep's plan (its start time and jobs) is written into
    the Hydra sweep folder, from which every job's progress lines count the
    architectures done of how many (:mod:`tfnas.tasks.progress`). At the end,
    every record of ``results_dir`` is collected into
    ``{results_dir}/{space}/records.csv`` (one row per record: arch,
    benchmark id, status, error, ground truth and every score) and the
    totals are logged: the sweep's (run, skipped, claimed by another
    process) and the folder's. Records stay the source of truth; the table is
    rebuilt each time (also by ``python -m tfnas.collect RESULTS_DIR``).
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from tfnas.tasks.progress import write_plan

        try:
            log.info(f"results -> {config.results_dir}")
        except Exception as exc:  # a bad path shows up again, with context, in the first job
            log.warning(f"could not resolve results_dir at launch: {type(exc).__name__}: {exc}")
        hydra_cfg = config.hydra
        try:
            overrides = None
            if hydra_cfg.sweeper.get("_target_") == BASIC_SWEEPER:
                params = hydra_cfg.sweeper.get("params") or {}
                overrides = [f"{k}={v}" for k, v in params.items()] + list(hydra_cfg.overrides.task)
            write_plan(hydra_cfg.sweep.dir, overrides)
        except Exception as exc:  # progress lines then count each job's own architectures
            log.warning(f"progress of the whole sweep not available: {type(exc).__name__}: {exc}")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from tfnas.collect import collect
        from tfnas.tasks.progress import summary

        try:
            line = summary(config.hydra.sweep.dir, verb={"score": "scored", "train": "trained"}.get(
                str(config.hydra.job.name), "run"))
            if line:
                log.info(f"this sweep: {line}")
        except Exception as exc:
            log.warning(f"could not read the sweep's progress log: {type(exc).__name__}: {exc}")
        try:
            collect(config.results_dir)
        except Exception as exc:  # the sweep's records are safe; a table failure must not look like a sweep failure
            log.error(f"could not write the combined table: {type(exc).__name__}: {exc}")
