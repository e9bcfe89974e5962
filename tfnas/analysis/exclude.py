"""Which architectures each metric can be judged on, and why the others cannot.

An architecture enters the correlation of a metric with a target only when
all of these hold; the first one that fails is the reason it is excluded
(so the counts of one metric add up to the number of architectures):

1. ``record_error``: no record of it finished (``status == "error"``);
2. ``failed_training``: its ground-truth ``status`` is not ``OK`` (e.g.
   NAS-Bench-NLP's ``"loss is nan!"``), or the target is NaN/inf;
   ``no_truth``: the target is absent (never trained, not in the benchmark);
3. ``missing_score``: the metric was not computed for it;
4. ``nan_score`` / ``inf_score``: the metric is undefined for it (the
   record's ``reasons`` say why, e.g. a constant hidden state).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import pandas as pd

from tfnas.analysis.load import Entry

KINDS: tuple[str, ...] = ("record_error", "failed_training", "no_truth", "missing_score", "nan_score", "inf_score")

EXCLUSION_COLUMNS = ["arch", "benchmark_id", "metric", "target", "kind", "reason"]


def truth_ok(status: Any) -> bool:
    """Whether a ground-truth ``status`` means the training finished (missing status counts as OK)."""
    if status is None or (isinstance(status, float) and math.isnan(status)):
        return True
    return str(status).strip().lower() == "ok"


def truth_problem(truth: dict[str, Any], target: str) -> tuple[str, str] | None:
    """``(kind, reason)`` when ``truth`` cannot serve as ground truth for ``target``, else None."""
    status = truth.get("status")
    if not truth_ok(status):
        return "failed_training", f"training status {status!r}"
    if target not in truth or truth[target] is None:
        return "no_truth", f"no {target} in the ground truth"
    try:
        v = float(truth[target])
    except (TypeError, ValueError):
        return "failed_training", f"{target} = {truth[target]!r} is not a number"
    if not math.isfinite(v):
        return "failed_training", f"{target} = {v}"
    return None


def score_problem(entry: Entry, metric: str) -> tuple[str, str] | None:
    """``(kind, reason)`` when ``entry`` has no usable value of ``metric``, else None."""
    if entry.status != "ok":
        return "record_error", entry.error or "record status error"
    if metric not in entry.scores:
        return "missing_score", "not computed"
    v = entry.scores[metric]
    if math.isnan(v):
        return "nan_score", entry.reasons.get(metric, "NaN score, no reason recorded")
    if math.isinf(v):
        return "inf_score", entry.reasons.get(metric, f"score is {v}")
    return None


def usable(df: pd.DataFrame, metric: str, target: str) -> np.ndarray:
    """Boolean mask of the rows of a :func:`~tfnas.analysis.load.wide_table` usable for (metric, target).

    Same rules as the module docstring: ok record, truth status OK, finite
    target, finite score.

    Raises:
        KeyError: ``metric`` or ``target`` is not a column (names it).
    """
    if metric not in df.columns:
        raise KeyError(f"{metric!r} is not a column of the score table (columns: {list(df.columns)})")
    return usable_truth(df, target) & np.isfinite(df[metric].to_numpy(dtype=float))


def usable_truth(df: pd.DataFrame, target: str) -> np.ndarray:
    """Boolean mask of the rows with usable ground truth of ``target``, whatever their scores.

    Rules 1 and 2 of the module docstring: ok record, truth status OK, finite
    target. Combinations and searches impute undefined scores, so they use
    these rows.

    Raises:
        KeyError: ``target`` is not a column (names it).
    """
    if target not in df.columns:
        raise KeyError(f"{target!r} is not a column of the score table (columns: {list(df.columns)})")
    ok = (df["record_status"] == "ok").to_numpy()
    if "status" in df.columns:
        ok &= df["status"].map(truth_ok).to_numpy(dtype=bool)
    return ok & np.isfinite(pd.to_numeric(df[target], errors="coerce").to_numpy(dtype=float))


def exclusion_rows(entries: Sequence[Entry], metrics: Sequence[str], targets: Sequence[str]) -> pd.DataFrame:
    """Every reason an architecture is left out, one row each (``exclusions.csv``).

    ``metric`` is ``*`` for reasons that concern every metric (record error,
    ground truth) and ``target`` is ``*`` for reasons that concern every
    target (record error, score problems).
    """
    rows: list[dict[str, Any]] = []
    for e in entries:
        if e.status != "ok":
            rows.append(dict(arch=e.arch, benchmark_id=e.benchmark_id, metric="*", target="*",
                             kind="record_error", reason=e.error or "record status error"))
            continue
        for t in targets:
            prob = truth_problem(e.truth, t)
            if prob:
                rows.append(dict(arch=e.arch, benchmark_id=e.benchmark_id, metric="*", target=t,
                                 kind=prob[0], reason=prob[1]))
        for m in metrics:
            prob = score_problem(e, m)
            if prob:
                rows.append(dict(arch=e.arch, benchmark_id=e.benchmark_id, metric=m, target="*",
                                 kind=prob[0], reason=prob[1]))
    return pd.DataFrame(rows, columns=EXCLUSION_COLUMNS)


def exclusion_counts(entries: Sequence[Entry], metrics: Sequence[str], target: str) -> pd.DataFrame:
    """Per metric: architectures in total, used, and excluded per first reason (see module doc).

    Returns:
        DataFrame with columns ``metric, archs, used`` and one column per
        :data:`KINDS`; ``used + Σ kinds == archs`` on every row.
    """
    out = []
    for m in metrics:
        counts = dict.fromkeys(KINDS, 0)
        used = 0
        for e in entries:
            prob = score_problem(e, m) if e.status != "ok" else truth_problem(e.truth, target) or score_problem(e, m)
            if prob is None:
                used += 1
            else:
                counts[prob[0]] += 1
        out.append(dict(metric=m, archs=len(entries), used=used, **counts))
    return pd.DataFrame(out, columns=["metric", "archs", "used", *KINDS])
