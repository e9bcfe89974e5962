"""Read every result record of one or more sweeps and merge them per architecture.

Records (:mod:`tfnas.results`) are JSON files ``arch_*.json`` anywhere below a
results folder. A sweep may be partial or have crashed: whatever records are
there are read; files named like records that are not records are skipped
with a warning and counted.

Merging. Records are grouped by ``(space, arch, seed, batch_index)`` — the
*setting* of a record is its construction ``seed`` and its scoring minibatch
``settings["batch_index"]`` (0 when absent). Within a group (for instance the
score record and the train record of one architecture, or the same
architecture found in two results folders):

- scores: the first finite value of each metric wins, score records before
  train records, then in path order; two different finite values of the same
  metric are counted as a *conflict* (usually two sweeps with different
  scoring options): they are counted in one warning line (with the first
  and the ``+where.<setting>=<value>`` filter that keeps one sweep) and counted
  in ``summary.md``;
- truth: from **one source per architecture**. A score record's truth is the
  benchmark's (copied when scoring), a train record's the result of
  ``train.py`` (often a short protocol such as ``experiment=quick``), so the
  two are different quantities and never mixed: when a score record of the
  group has truth, the benchmark's truth is kept and the train records' truth
  is not used; otherwise (generated cells, or a benchmark without truth) the
  train records' truth is used. Within the source used the first value of
  each key wins, in path order. Every record whose truth differs from the
  kept one (a training beside the benchmark's truth, two trainings that disagree)
  is listed in :attr:`RecordSet.truth_conflicts`, named in one warning line
  and counted in ``summary.md``. The trained truth of benchmark
  architectures is analysed on its own with ``where={"source": "train"}``
  (``+where.source=train`` on the command line);
- status: ``ok`` when any record of the group is ``ok``.

Groups with different settings are not duplicates: they are the repeats of
the ablation view (:mod:`tfnas.analysis.ablation`); the main analysis uses one
setting (:func:`choose_setting`).
"""

from __future__ import annotations

import logging
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

from tfnas import results
from tfnas.schema import override_value

log = logging.getLogger(__name__)

class InputError(ValueError):
    """The records, or the analysis asked of them, cannot be analysed (no records, a target they lack, ...).

    ``analyze.py`` prints its message as one line and exits with status 1.
    """


#: The setting the paper's tables use: model seed 0, first test minibatch.
DEFAULT_SETTING = (0, 0)


@dataclass
class Entry:
    """All records of one architecture under one setting, merged.

    Attributes:
        space: search-space name.
        arch: index of the architecture in its space.
        benchmark_id: the benchmark's own id (first one found), or None.
        seed: model construction seed.
        batch_index: index of the scoring minibatch.
        status: ``"ok"`` if any record is ok, else ``"error"``.
        error: error text of the failed records (joined), or None.
        scores: metric -> value from the ok records (NaN kept).
        reasons: metric -> why the value is NaN or non-finite.
        truth: ground truth from one source: the benchmark's (score records) when any
            score record has one, else the train records' (see the module docstring).
        sources: ``source`` field of each merged record.
        paths: the record files merged.
    """

    space: str
    arch: int
    benchmark_id: str | None
    seed: int
    batch_index: int
    status: str = "ok"
    error: str | None = None
    scores: dict[str, float] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    truth: dict[str, Any] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)

    @property
    def setting(self) -> tuple[int, int]:
        """``(seed, batch_index)``."""
        return (self.seed, self.batch_index)


@dataclass
class RecordSet:
    """The merged records of one or more results folders.

    Attributes:
        entries: one :class:`Entry` per (space, arch, seed, batch_index).
        n_files: record files found (``arch_*.json``).
        n_records: files that were valid records and passed ``where``.
        skipped: ``(path, why)`` for each file that is not a record.
        filtered_out: records left out by the ``where`` filter.
        conflicts: one line per metric whose merged records disagree.
        conflict_hint: with conflicts, the ``+where.<key>=<value>`` filter that keeps one
            sweep (:func:`conflict_filter`), for the report.
        truth_conflicts: one line per record whose ground truth differs from the
            truth kept for its architecture and is not used (a train record
            beside the benchmark's truth, or a later record of the same source).
        dirs: the results folders read.
    """

    entries: list[Entry]
    n_files: int
    n_records: int
    skipped: list[tuple[str, str]] = field(default_factory=list)
    filtered_out: int = 0
    conflicts: list[str] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)
    truth_conflicts: list[str] = field(default_factory=list)
    conflict_hint: str = ""

    def spaces(self) -> list[str]:
        """Search spaces present, in order of first appearance."""
        return list(dict.fromkeys(e.space for e in self.entries))

    def of_space(self, space: str) -> list[Entry]:
        """Entries of one search space."""
        return [e for e in self.entries if e.space == space]


def _get_path(d: dict[str, Any], dotted: str) -> Any:
    cur: Any = d
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return _MISSING
        cur = cur[part]
    return cur


_MISSING = object()


def _flatten(d: dict[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for k, v in d.items():
        if isinstance(v, dict) and v:
            yield from _flatten(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def _matches(rec: dict[str, Any], where: dict[str, Any]) -> bool:
    # Keys are looked up in the record's settings first, then in the record
    # itself (so ``where: {source: score}`` works too); dotted keys descend.
    for key, want in where.items():
        got = _get_path(rec.get("settings") or {}, key)
        if got is _MISSING:
            got = _get_path(rec, key)
        if got is _MISSING or got != want:
            return False
    return True


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _as_float(x: Any) -> float:
    if x is None:
        return math.nan
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def _read_one(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    try:
        rec = results.load(path)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        return None, str(exc)
    if not isinstance(rec.get("scores", {}), dict) or not isinstance(rec.get("truth", {}), dict):
        return None, f"{path}: 'scores' and 'truth' must be objects"
    try:
        int(rec["arch"])
    except (TypeError, ValueError):
        return None, f"{path}: arch {rec['arch']!r} is not an integer"
    return rec, None


def check_results_dirs(
    results_dirs: str | os.PathLike | Sequence[str | os.PathLike], need_records: bool = True
) -> list[Path]:
    """The results folders, checked before anything is read or written (``analyze.py`` runs it before Hydra
    creates its run folder, so a wrong folder leaves nothing behind).

    Args:
        results_dirs: a folder or a list of folders.
        need_records: also require at least one ``arch_*.json`` file below them
            (the first one found ends the search, so it is cheap on any tree).

    Returns:
        The folders as paths.

    Raises:
        FileNotFoundError: a results folder does not exist (names it).
        InputError: the list is empty, or (``need_records``) no folder holds a record file.
    """
    if isinstance(results_dirs, (str, os.PathLike)):
        results_dirs = [results_dirs]
    dirs = [Path(d) for d in results_dirs]
    if not dirs:
        raise InputError("results_dir is empty: give at least one results folder")
    for d in dirs:
        if not d.is_dir():
            raise FileNotFoundError(f"results folder {d} does not exist")
    if need_records and not any(next(d.rglob("arch_*.json"), None) is not None for d in dirs):
        raise InputError(no_records_message(dirs))
    return dirs


def no_records_message(dirs: Sequence[Path]) -> str:
    """The error text for results folders without any ``arch_*.json`` file."""
    return f"no result records (arch_*.json) below {', '.join(map(str, dirs))}"


def load_records(
    results_dirs: str | os.PathLike | Sequence[str | os.PathLike],
    where: dict[str, Any] | None = None,
) -> RecordSet:
    """Read and merge every record below one or more results folders.

    Args:
        results_dirs: a folder or a list of folders; records are found at any
            depth (``arch_*.json``).
        where: optional filter ``{settings key: value}``; dotted keys descend
            into nested settings, keys missing from ``settings`` are looked up
            in the record itself (e.g. ``{"paper_compat": True}``).

    Returns:
        The merged :class:`RecordSet`. Records whose ground truth is not used
        (see the module docstring) are named in one warning line.

    Raises:
        FileNotFoundError: a results folder does not exist (names it).
        InputError: no record at all was found, none passed ``where``, or the
            records mix architecture populations.
    """
    dirs = check_results_dirs(results_dirs, need_records=False)
    where = dict(_flatten(where or {}))  # {a: {b: v}} (from +where.a.b=v) -> {'a.b': v}

    paths: list[Path] = []
    for d in dirs:
        paths.extend(results.iter_record_files(d))
    skipped: list[tuple[str, str]] = []
    groups: dict[tuple[str, int, int, int], list[tuple[dict[str, Any], str]]] = {}
    n_records = filtered = 0
    for path in paths:
        rec, why = _read_one(path)
        if rec is None:
            skipped.append((str(path), why or "unreadable"))
            log.warning("skipping %s", why)
            continue
        if where and not _matches(rec, where):
            filtered += 1
            continue
        n_records += 1
        settings = rec.get("settings") or {}
        seed = int(rec.get("seed", settings.get("seed", 0)) or 0)
        batch_index = int(settings.get("batch_index", 0) or 0)
        key = (str(rec["space"]), int(rec["arch"]), seed, batch_index)
        groups.setdefault(key, []).append((rec, str(path)))

    if not paths:
        raise InputError(no_records_message(dirs))
    _check_one_population(groups)
    if n_records == 0:
        if filtered:
            raise InputError(f"none of the {filtered} records matches where={where}")
        raise InputError(
            f"none of the {len(paths)} arch_*.json files below {', '.join(map(str, dirs))} is a tfnas record"
        )

    conflicts: list[Conflict] = []
    truth_conflicts: list[tuple[str, int, str, str]] = []
    entries = [_merge(key, recs, conflicts, truth_conflicts) for key, recs in groups.items()]
    if conflicts:
        log.warning(conflict_warning(conflicts))
    if truth_conflicts:
        log.warning(truth_conflict_warning(truth_conflicts))
    entries.sort(key=lambda e: (e.space, e.seed, e.batch_index, e.arch))
    if skipped:
        log.warning("skipped %d file(s) that are not tfnas records", len(skipped))
    return RecordSet(entries, len(paths), n_records, skipped, filtered, [c.line for c in conflicts],
                     [str(d) for d in dirs], [line for *_, line in truth_conflicts],
                     conflict_filter(conflicts) if conflicts else "")


def population(rec: dict[str, Any]) -> str:
    """Which architectures a record's ``arch`` indexes: a benchmark file, or generated cells (and how)."""
    cfg = (rec.get("settings") or {}).get("space_cfg") or {}
    if cfg.get("benchmark"):
        return str(cfg["benchmark"])
    if cfg:
        return f"generated cells (generator_seed={cfg.get('generator_seed')}, num_hidden={cfg.get('num_hidden')})"
    return "unspecified"


def _check_one_population(groups: dict[tuple, list[tuple[dict[str, Any], str]]]) -> None:
    """Refuse to merge records whose arch indices name different architectures (e.g. benchmark vs generated)."""
    counts: dict[str, Counter] = {}
    for (space, *_), recs in groups.items():
        counts.setdefault(space, Counter()).update(population(r) for r, _ in recs)
    for space, c in counts.items():
        if len(c) > 1:
            listed = "; ".join(f"{p}: {n} record(s)" for p, n in sorted(c.items(), key=lambda pn: (-pn[1], pn[0])))
            raise InputError(
                f"{space} records come from {len(c)} architecture populations ({listed}); arch i names a different "
                "architecture in each, so they cannot be joined. Analyse one at a time, e.g. "
                "+where.space_cfg.benchmark=<file name> or +where.space_cfg.benchmark=null (generated), "
                "or keep each population in its own results_dir"
            )


@dataclass
class Conflict:
    """Two merged records with different finite values of one metric.

    Attributes:
        line: which architecture and metric, the value kept and the one ignored (from which file).
        settings: ``(dotted settings key, value kept, value ignored)`` for each setting in which
            the two records differ (:func:`differing_settings`); empty when none does.
    """

    line: str
    settings: list[tuple[str, Any, Any]] = field(default_factory=list)


def differing_settings(kept: dict[str, Any], other: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(dotted key, kept value, other value)`` for each setting of two records that differs.

    The records' ``source`` (score or train) comes first, then their settings in the kept record's order.
    """
    a = dict(_flatten(kept.get("settings") or {}))
    b = dict(_flatten(other.get("settings") or {}))
    for rec, flat in ((kept, a), (other, b)):  # a score record beside a train record: the source first
        if "source" not in flat:
            flat["source"] = rec.get("source", "score")
    keys = ["source"] + [k for k in list(a) + [k for k in b if k not in a] if k != "source"]
    return [(k, a.get(k), b.get(k)) for k in dict.fromkeys(keys) if a.get(k, _MISSING) != b.get(k, _MISSING)]


def conflict_filter(conflicts: Sequence[Conflict]) -> str:
    """The ``+where.<key>=<value>`` filter that keeps the first conflict's kept values, or the generic form.

    The key is the setting in which the records of the first conflict differ
    (e.g. ``+where.paper_compat=false`` when default and ``paper_compat=true``
    sweeps of the same architectures are read together).
    """
    first = conflicts[0].settings if conflicts else []
    if not first:
        return "+where.<setting>=<value>"
    key, kept, _ = first[0]
    return f"+where.{key}={override_value(kept)}"


def conflict_warning(conflicts: Sequence[Conflict]) -> str:
    """One line: how many metric values of merged records disagree, the first, and the filter that avoids it."""
    first = conflicts[0]
    differ = ", ".join(f"{k} {override_value(a)} vs {override_value(b)}" for k, a, b in first.settings[:3])
    why = f"; the two records differ in their settings: {differ}" if differ else ""
    return (f"{len(conflicts)} conflicting value(s) for the same metric in merged records (scored with different "
            f"settings?): the first value is kept; first: {first.line}{why}; analyse one sweep at a time with "
            f"{conflict_filter(conflicts)}")


def truth_conflict_warning(truth_conflicts: Sequence[tuple[str, int, str, str]]) -> str:
    """One line naming the architectures whose records' ground truth was not used, by source.

    Args:
        truth_conflicts: ``(space, arch, source of the unused record, line)`` per record.
    """
    parts = []
    for source in dict.fromkeys(src for _, _, src, _ in truth_conflicts):
        mine = [(sp, a) for sp, a, src, _ in truth_conflicts if src == source]
        archs: dict[str, set[int]] = {}
        for sp, a in mine:
            archs.setdefault(sp, set()).add(a)
        listed = "; ".join(f"{sp} arch {', '.join(map(str, sorted(a)[:10]))}" + (" ..." if len(a) > 10 else "")
                           for sp, a in archs.items())
        parts.append(f"{len(mine)} {source} record(s) ({listed})")
    return (f"ground truth not used, as it differs from the truth kept for the same architecture (the benchmark's "
            f"in score records before a training's in train records, then the first record): {', '.join(parts)}; "
            f"first: {truth_conflicts[0][3]}; analyse the trained truth alone with +where.source=train")


def _same_truth(a: Any, b: Any) -> bool:
    if _finite(a) and _finite(b):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=0.0)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):  # NaN or inf: equal when both are the same
        return (math.isnan(a) and math.isnan(b)) or a == b
    return a == b


def _merge(
    key: tuple[str, int, int, int],
    recs: list[tuple[dict[str, Any], str]],
    conflicts: list["Conflict"],
    truth_conflicts: list[tuple[str, int, str, str]],
) -> Entry:
    space, arch, seed, batch_index = key
    # Score records first, then train records, path order within.
    recs = sorted(recs, key=lambda rp: (rp[0].get("source") == "train", rp[1]))
    entry = Entry(space, arch, None, seed, batch_index)
    # Truth from one source: the benchmark's (score records) when there is any, else the trainings'.
    benchmark_truth = any(r.get("truth") and r.get("source") != "train" for r, _ in recs)
    kept_from: dict[str, tuple[str, str]] = {}  # truth key -> (source, path) of the value kept
    score_from: dict[str, dict[str, Any]] = {}  # metric -> the record whose value is kept
    errors: list[str] = []
    any_ok = False
    for rec, path in recs:
        source = str(rec.get("source", "score"))
        entry.paths.append(path)
        entry.sources.append(source)
        if entry.benchmark_id is None and rec.get("benchmark_id") is not None:
            entry.benchmark_id = str(rec["benchmark_id"])
        truth = rec.get("truth") or {}
        used = not (benchmark_truth and source == "train")
        differ = [k for k, v in truth.items() if k in entry.truth and not _same_truth(entry.truth[k], v)]
        if used:
            for k, v in truth.items():
                if k not in entry.truth:
                    entry.truth[k], kept_from[k] = v, (source, path)
        if differ:
            kept_source, kept_path = kept_from[differ[0]]
            values = ", ".join(f"{k} {entry.truth[k]!r} kept, {truth[k]!r} not used" for k in differ)
            truth_conflicts.append((space, arch, source, (
                f"{space} arch {arch} (seed {seed}, batch {batch_index}): {values}: truth of the {kept_source} "
                f"record {kept_path} kept, not that of the {source} record {path}")))
        if rec.get("status", "ok") != "ok":
            errors.append(str(rec.get("error") or rec.get("status")))
            continue
        any_ok = True
        reasons = rec.get("reasons") or {}
        for name, value in (rec.get("scores") or {}).items():
            v = _as_float(value)
            old = entry.scores.get(name)
            if old is None or (not math.isfinite(old) and math.isfinite(v)):
                entry.scores[name] = v
                score_from[name] = rec
                if name in reasons:
                    entry.reasons[name] = str(reasons[name])
                elif math.isfinite(v):
                    entry.reasons.pop(name, None)
            elif math.isfinite(old) and math.isfinite(v) and not math.isclose(old, v, rel_tol=1e-9, abs_tol=0.0):
                conflicts.append(Conflict(
                    f"{space} arch {arch} (seed {seed}, batch {batch_index}) {name}: kept {old!r}, "
                    f"ignored {v!r} from {path}", differing_settings(score_from[name], rec)))
    entry.status = "ok" if any_ok else "error"
    entry.error = "; ".join(errors) if errors else None
    return entry


def settings_counts(entries: Iterable[Entry]) -> Counter:
    """How many architectures each ``(seed, batch_index)`` setting has."""
    return Counter(e.setting for e in entries)


def choose_setting(
    entries: Sequence[Entry], seed: int | None = None, batch_index: int | None = None
) -> tuple[tuple[int, int], str]:
    """The setting of the main analysis and a sentence saying why.

    Args:
        entries: entries of one space.
        seed: force this seed (None: automatic).
        batch_index: force this minibatch (None: automatic).

    Returns:
        ``((seed, batch_index), note)``. Automatic choice: the paper's default
        (seed 0, batch 0) when present, else the setting with the most
        architectures.

    Raises:
        InputError: the forced setting has no records.
    """
    counts = settings_counts(entries)
    if seed is not None or batch_index is not None:
        cands = [s for s in counts if (seed is None or s[0] == seed) and (batch_index is None or s[1] == batch_index)]
        if not cands:
            raise InputError(
                f"no records with seed={seed} batch_index={batch_index}; present: {sorted(counts)}"
            )
        best = max(cands, key=lambda s: (counts[s], -s[0], -s[1]))
        return best, f"seed {best[0]}, batch_index {best[1]} (chosen in the config)"
    if len(counts) == 1:
        only = next(iter(counts))
        return only, f"seed {only[0]}, batch_index {only[1]} (the only setting in the records)"
    if DEFAULT_SETTING in counts:
        return DEFAULT_SETTING, (
            f"seed 0, batch_index 0 (the default setting; {len(counts) - 1} other setting(s) "
            f"feed the ablation view)"
        )
    best = max(counts, key=lambda s: (counts[s], -s[0], -s[1]))
    return best, f"seed {best[0]}, batch_index {best[1]} (the most common setting: {counts[best]} archs)"


def metric_names(entries: Iterable[Entry]) -> list[str]:
    """All score names found, sorted."""
    return sorted({name for e in entries for name in e.scores})


def truth_names(entries: Iterable[Entry]) -> list[str]:
    """All ground-truth keys found, in order of first appearance."""
    return list(dict.fromkeys(k for e in entries for k in e.truth))


def wide_table(entries: Sequence[Entry]) -> pd.DataFrame:
    """One row per entry: ``arch, benchmark_id, record_status``, the truth, every metric.

    Non-numeric truth values (``status``) are kept as text, numeric ones as
    floats (missing: NaN); metrics are floats, NaN where missing or undefined.

    Raises:
        InputError: a metric has the same name as a ground-truth key.
    """
    metrics = metric_names(entries)
    truths = truth_names(entries)
    clash = set(metrics) & (set(truths) | {"arch", "benchmark_id", "record_status"})
    if clash:
        raise InputError(f"metric name(s) {sorted(clash)} clash with ground-truth or id columns")
    rows = []
    for e in entries:
        row: dict[str, Any] = {"arch": e.arch, "benchmark_id": e.benchmark_id, "record_status": e.status}
        for k in truths:
            v = e.truth.get(k)
            row[k] = v if isinstance(v, str) else _as_float(v)
        for m in metrics:
            row[m] = e.scores.get(m, math.nan)
        rows.append(row)
    df = pd.DataFrame(rows, columns=["arch", "benchmark_id", "record_status", *truths, *metrics])
    for k in truths:
        if df[k].map(lambda v: isinstance(v, str)).any():
            df[k] = df[k].astype(object)
        else:
            df[k] = df[k].astype(float)
    return df
