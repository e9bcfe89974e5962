"""Resume a sweep at scale: list the architectures of a sweep that have no record yet.

A rerun of the same ``score.py -m`` sweep already skips scored architectures,
but each job still pays Python, torch, Lightning and Hydra start-up (seconds,
plus queueing on a cluster) only to find its record. This command computes,
without running any job, which architectures of a sweep lack a record, and
prints the override that sweeps exactly those::

    python -m tfnas.sweep missing 'arch=range(0,345)' metrics.names=[num_params]
    # -> arch=3,17,42            (stdout; counts on stderr)
    python score.py -m metrics.names=[num_params] \\
        $(python -m tfnas.sweep missing 'arch=range(0,345)' metrics.names=[num_params])

Shard sweeps give the shards that still hold a missing architecture
(``shard=3,17``); ``--shard-size N`` regroups the missing architectures of an
``arch=`` sweep into shards of N; ``--command`` prints whole ``score.py``
command lines. The record of an architecture is found by the same config
hash the scoring task computes (:func:`tfnas.tasks.score.sweep_settings` on
the instantiated space and data), so launcher, thread, shard and path
settings do not matter, and every other override does.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from omegaconf import DictConfig, OmegaConf

import tfnas.hydra_support  # noqa: F401  (registers the config resolvers)
from tfnas import results
from tfnas.paths import REPO_ROOT

#: Overrides that choose the architectures of a job (the rest defines the settings).
INDEX_KEYS = ("arch", "shard")
#: Temporary files of records being written (left behind by killed jobs).
TMP_GLOB = ".arch_*.tmp"


@dataclass
class MissingGroup:
    """The missing work of one setting of a sweep (one combination of the non-index overrides).

    Attributes:
        swept: the group's values of the swept non-index overrides, e.g.
            ``["seed=1"]`` (empty for a sweep over architectures only).
        fixed: the overrides common to every job, as given (without
            ``arch``/``shard``).
        space: space name.
        results_dir: where the records are looked for.
        shard_size: shard size of the output (None: ``arch=`` output).
        total: distinct architectures the group's jobs cover (inside the space).
        missing: architectures without a record, sorted.
        errors: architectures whose record has ``status: error``, listed for
            rescoring (only with ``retry_errors``).
        stale_tmp: temporary record files left by killed jobs in the space's folder.
    """

    swept: list[str]
    fixed: list[str]
    space: str
    results_dir: str
    shard_size: int | None
    total: int
    missing: list[int]
    errors: list[int] = field(default_factory=list)
    stale_tmp: int = 0

    @property
    def todo(self) -> list[int]:
        """Architectures to (re)score: the missing ones and the retried errors."""
        return sorted(set(self.missing) | set(self.errors))

    def index_override(self) -> str:
        """``arch=i,j,...`` or ``shard=k,...`` covering :attr:`todo` (empty string if nothing to do)."""
        todo = self.todo
        if not todo:
            return ""
        if self.shard_size is None:
            return "arch=" + ",".join(str(i) for i in todo)
        return "shard=" + ",".join(str(k) for k in sorted({i // self.shard_size for i in todo}))

    def overrides(self, regrouped: bool = False) -> list[str]:
        """The overrides that select this group's remaining work.

        Args:
            regrouped: add ``shard_size=N`` (the user's sweep did not set it).
        """
        if not self.todo:
            return []
        extra = [f"shard_size={self.shard_size}"] if regrouped and self.shard_size is not None else []
        retry = ["overwrite=true"] if self.errors else []
        return [*self.swept, self.index_override(), *extra, *retry]

    def command(self, script: str = "score.py") -> str:
        """A whole ``python score.py -m ...`` command line scoring this group's remaining work."""
        if not self.todo:
            return ""
        fixed = [o for o in self.fixed if self.shard_size is None or _key(o) != "shard_size"]
        index = [self.index_override()] + ([f"shard_size={self.shard_size}"] if self.shard_size is not None else [])
        retry = ["overwrite=true"] if self.errors else []
        return shlex.join(["python", script, "-m", *fixed, *self.swept, *index, *retry])


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _int_or_none(text: str, what: str) -> int | None:
    if text in ("null", "None", "~"):
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{what}={text!r} is not an integer") from None


def expand(overrides: Sequence[str]) -> tuple[list[str], list[tuple[list[str], list[str]]]]:
    """Split a sweep's command-line overrides into jobs, as Hydra's basic sweeper does.

    Args:
        overrides: ``score.py -m`` overrides, e.g. ``["arch=range(0,4)", "seed=0,1"]``.

    Returns:
        ``(fixed, jobs)``: ``fixed`` = the non-sweep overrides other than
        ``arch``/``shard``, as given; ``jobs`` = one ``(swept, index)`` pair per
        job, ``swept`` the job's values of swept non-index keys and ``index``
        its ``arch=``/``shard=`` overrides.

    Raises:
        ValueError: a sweep form the basic sweeper does not support (intervals),
            or an override that does not parse (Hydra's message).
    """
    import itertools

    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException as exc:
        raise ValueError(str(exc)) from exc
    fixed: list[str] = []
    axes: list[list[tuple[bool, str]]] = []  # (is index key, "key=value") choices per swept/index key
    for o in parsed:
        key = o.get_key_element()
        is_index = key.lstrip("+~") in INDEX_KEYS
        if o.is_sweep_override():
            if not o.is_discrete_sweep():
                raise ValueError(f"{o.input_line}: only lists and range() sweeps are supported")
            axes.append([(is_index, f"{key}={v}") for v in o.sweep_string_iterator()])
        elif is_index:
            axes.append([(True, f"{key}={o.get_value_element_as_str()}")])
        else:
            fixed.append(o.input_line)
    jobs = []
    for combo in itertools.product(*axes) if axes else [()]:
        jobs.append(([s for i, s in combo if not i], [s for i, s in combo if i]))
    return fixed, jobs


def compose(overrides: Sequence[str], config_dir: str | Path | None = None, config_name: str = "score") -> DictConfig:
    """The task config of ``score.py`` for ``overrides`` (Hydra's own settings are dropped).

    Raises:
        hydra.errors.HydraException: the overrides do not compose (Hydra's message).
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    config_dir = Path(config_dir) if config_dir else REPO_ROOT / "conf"
    task_overrides = [o for o in overrides if not _key(o).startswith(("hydra.", "hydra/"))]
    with initialize_config_dir(config_dir=str(config_dir.resolve()), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=task_overrides)


def record_status(path: Path) -> str:
    """``status`` of a record file (``"unreadable"`` when it is not a valid record)."""
    try:
        return str(results.load(path).get("status", "ok"))
    except (OSError, ValueError):
        return "unreadable"


def missing_archs(
    cfg: DictConfig, space: Any, data: Any, indices: Sequence[int], retry_errors: bool = False
) -> tuple[list[int], list[int]]:
    """Which of ``indices`` have no record under ``cfg.results_dir`` (and which have an error record).

    Uses the scoring task's own hash: ``results.config_hash(sweep_settings(cfg, space, data) + arch)``.

    Args:
        cfg: the composed ``score`` config.
        space, data: ``cfg.space`` and ``cfg.data`` instantiated.
        indices: architecture indices (already clipped to the space).
        retry_errors: also return the indices whose record says ``status: error``.

    Returns:
        ``(missing, errors)``, both sorted; every index of ``indices`` when
        ``cfg.overwrite`` is true (the task would rescore them all).
    """
    from tfnas.tasks.score import sweep_settings

    settings = sweep_settings(cfg, space, data)
    out_dir = str(cfg.results_dir)
    missing, errors = [], []
    for i in sorted(set(int(i) for i in indices)):
        chash = results.config_hash(dict(settings, arch=i))
        path = results.record_path(out_dir, space.name, i, chash)
        if cfg.get("overwrite", False) or not results.exists(out_dir, space.name, i, chash):
            missing.append(i)
        elif retry_errors and record_status(path) != "ok":
            errors.append(i)
    return missing, errors


def find_missing(
    overrides: Sequence[str],
    shard_size: int | None = None,
    retry_errors: bool = False,
    config_dir: str | Path | None = None,
    config_name: str = "score",
) -> list[MissingGroup]:
    """The remaining work of the sweep ``score.py -m <overrides>``, one group per setting.

    Args:
        overrides: the sweep's overrides (``arch=range(...)`` or
            ``shard=range(...)``, plus any others; ``hydra...`` ones are ignored).
        shard_size: regroup the missing architectures into shards of this
            size (default: shards if the sweep is over shards, else archs).
        retry_errors: also list architectures whose record has ``status: error``
            (their overrides then carry ``overwrite=true``).
        config_dir, config_name: the config to compose (default: the repository's ``conf/score``).

    Returns:
        One :class:`MissingGroup` per combination of the swept non-index
        overrides, in sweep order.

    Raises:
        ValueError: bad overrides, or a non-positive ``shard_size``.
    """
    from hydra.utils import instantiate

    from tfnas.tasks.loop import job_indices

    if shard_size is not None and shard_size < 1:
        raise ValueError(f"--shard-size must be >= 1, got {shard_size}")
    fixed, jobs = expand(overrides)
    groups: dict[tuple[str, ...], list[list[str]]] = {}
    for swept, index in jobs:
        groups.setdefault(tuple(swept), []).append(index)
    instances: dict[str, tuple[Any, Any]] = {}  # space+data config -> instances (the benchmark is read once)
    out = []
    for swept, indexes in groups.items():
        cfg = compose([*fixed, *swept], config_dir, config_name)
        key = OmegaConf.to_yaml({k: OmegaConf.to_container(cfg[k], resolve=True) for k in ("space", "data")})
        if key not in instances:
            instances[key] = (instantiate(cfg.space, _convert_="all"), instantiate(cfg.data, _convert_="all"))
        space, data = instances[key]
        covered: set[int] = set()
        sharded = False
        for index in indexes:
            values = {_key(s): _int_or_none(s.split("=", 1)[1], _key(s)) for s in index}
            job = OmegaConf.create(
                {
                    "arch": values.get("arch", cfg.get("arch")),
                    "shard": values.get("shard", cfg.get("shard")),
                    "shard_size": cfg.shard_size,
                }
            )
            sharded = sharded or job.shard is not None
            covered.update(job_indices(job, len(space)))
        missing, errors = missing_archs(cfg, space, data, sorted(covered), retry_errors)
        size = shard_size if shard_size is not None else (int(cfg.shard_size) if sharded else None)
        folder = Path(str(cfg.results_dir)) / space.name
        stale = len(list(folder.glob(TMP_GLOB))) if folder.is_dir() else 0
        out.append(
            MissingGroup(
                swept=list(swept),
                fixed=fixed,
                space=space.name,
                results_dir=str(cfg.results_dir),
                shard_size=size,
                total=len(covered),
                missing=missing,
                errors=errors,
                stale_tmp=stale,
            )
        )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tfnas.sweep missing [options] OVERRIDES...``; prints overrides or commands."""
    ap = argparse.ArgumentParser(
        prog="python -m tfnas.sweep",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("missing", help="print the overrides that sweep only the architectures without a record")
    m.add_argument("overrides", nargs="*", help="the sweep's score.py overrides, e.g. 'arch=range(0,14322)'")
    m.add_argument("--shard-size", type=int, default=None, help="regroup the missing architectures into shards of N")
    m.add_argument("--retry-errors", action="store_true", help="also rescore architectures whose record is an error")
    m.add_argument("--command", action="store_true", help="print whole score.py command lines")
    m.add_argument("--config-dir", default=None, help="config folder (default: the repository's conf/)")
    args, rest = ap.parse_known_args(argv)
    unknown = [a for a in rest if a.startswith("-") or "=" not in a]
    if unknown:
        ap.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.overrides = [*args.overrides, *rest]  # overrides may also follow the options
    if not args.overrides:
        ap.error("give the sweep's overrides, e.g. 'arch=range(0,345)'")

    from hydra.errors import HydraException

    from tfnas.schema import ScoreConfig, check_overrides

    try:  # a wrong override: one line, as score.py gives it
        check_overrides(ScoreConfig, args.overrides)
        groups = find_missing(args.overrides, args.shard_size, args.retry_errors, args.config_dir)
    except (HydraException, ValueError, OSError) as exc:  # ConfigError is a ValueError
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"{ap.prog}: {str(exc).strip().splitlines()[0]}", file=sys.stderr)
        return 1
    regrouped = args.shard_size is not None
    for g in groups:
        label = " ".join(g.swept) or "sweep"
        msg = (
            f"{label}: {g.total} architectures of {g.space}, {g.total - len(g.missing)} with a record, "
            f"{len(g.missing)} missing"
        )
        if args.retry_errors:
            msg += f", {len(g.errors)} errors to rescore"
        print(f"{msg} ({g.results_dir})", file=sys.stderr)
        if g.stale_tmp:
            print(
                f"  {g.stale_tmp} temporary record file(s) left by killed jobs in {g.results_dir}/{g.space} "
                "(harmless; delete them once no sweep is running)",
                file=sys.stderr,
            )
        if g.todo:
            print(g.command() if args.command else " ".join(shlex.quote(o) for o in g.overrides(regrouped)))
    if not any(g.todo for g in groups):
        print("nothing to do: every architecture of the sweep has a record", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
