"""What ``analyze.py`` shows of search: the budget simulation and the next batch to train.

:func:`simulation_report` runs :func:`~tfnas.search.simulate.simulate` on the
records' usable architectures and returns ``search_budget.csv`` (best found
per strategy and budget), ``search_targets.csv`` (trainings to reach the
pool's top 5 % / 1 %), a figure and the ``summary.md`` paragraph.
:func:`proposal_report` turns a :class:`~tfnas.search.propose.Proposal` into
its Markdown and console lines. The settings are the ``search`` config group
(``conf/search/default.yaml``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from tfnas import results
from tfnas.analysis.conventions import HEADLINE_METRICS, quality_sign
from tfnas.analysis.exclude import truth_ok, usable_truth
from tfnas.analysis.report import md_table
from tfnas.paths import REPO_ROOT
from tfnas.search.propose import Proposal, propose, train_command
from tfnas.search.simulate import Simulation, Spec, curves, simulate, trainings_to_reach

#: The ``search`` config group's defaults (``conf/search/default.yaml``, which explains each key).
DEFAULTS: dict[str, Any] = {
    "strategy": None, "budget": 20, "batch": 5, "warm": 5, "metric": None, "combination": None, "features": None,
    "alpha": 1.0, "xi": 0.01, "seed": 0, "truth": "train", "train_overrides": [],
    "simulate": {"enabled": "auto", "min_archs": 40, "strategies": ["random", "top_metric", "combination", "learned", "ego"],
                 "repeats": 200, "pool_fraction": 0.5, "max_budget": 0.25, "tops": [0.05, 0.01], "ci": 0.95},
}

#: A-priori rank combination per space: the paper's metrics, not chosen on our data. NAS-Bench-NLP: hidden
#: covariance of the three layers (the paper's metric, higher is better in each layer); NAS-Bench-BERT: head
#: confidence and the parameter count (the paper's best metric and its baseline; bigger models score higher).
DEFAULT_COMBINATION: dict[str, tuple[str, ...]] = {
    "nasbench_nlp": ("hidden_covariance_l1", "hidden_covariance_l2", "hidden_covariance_l3"),
    "nasbench_bert": ("head_confidence", "num_params"),
}

def resolved_metric(c: Mapping[str, Any], space: str, metrics: Sequence[str]) -> str:
    """``search.metric``, else the space's headline metric (``HEADLINE_METRICS``).

    Raises:
        ValueError: neither is set / scored (says to set ``search.metric``).
    """
    if c.get("metric"):
        return str(c["metric"])
    for m in HEADLINE_METRICS.get(space, ()):
        if m in metrics:
            return m
    raise ValueError(f"no default metric for space {space!r} in these records: set search.metric=<one of the metrics>")


def resolved_combination(c: Mapping[str, Any], space: str, metrics: Sequence[str]) -> list[str]:
    """``search.combination``, else the space's :data:`DEFAULT_COMBINATION` (those scored), else the headline metric."""
    if c.get("combination"):
        return [str(m) for m in c["combination"]]
    found = [m for m in DEFAULT_COMBINATION.get(space, ()) if m in metrics]
    return found or [resolved_metric(c, space, metrics)]


def strategy_settings(name: str, c: Mapping[str, Any], space: str, metrics: Sequence[str]) -> dict[str, Any]:
    """Keyword settings of strategy ``name`` from the ``search`` config.

    Raises:
        ValueError: unknown strategy name.
    """
    fit = {"warm": int(c["warm"]), "batch": int(c["batch"]), "metrics": c.get("features") or None}
    table = {
        "random": {},
        "top_metric": {"metric": resolved_metric(c, space, metrics)},
        "combination": {"metrics": resolved_combination(c, space, metrics)},
        "learned": {"warm_metric": resolved_metric(c, space, metrics), **fit, "alpha": float(c["alpha"])},
        "ego": {"warm_metric": resolved_metric(c, space, metrics), **fit, "xi": float(c["xi"])},
    }
    if name not in table:
        raise ValueError(f"unknown search strategy {name!r}; choose one of {sorted(table)}")
    return table[name]


def simulation_specs(c: Mapping[str, Any], space: str, metrics: Sequence[str]) -> tuple[list[Spec], list[str]]:
    """The simulated strategies: ``search.simulate.strategies``, with ``top_metric`` run for every metric.

    Returns:
        ``(specs, skipped)``: a strategy that needs a default metric the
        records do not have (``search.metric`` unset) is skipped, with the reason.
    """
    specs, skipped = [], []
    for name in c["simulate"]["strategies"]:
        if name == "top_metric":
            specs += [Spec(f"top:{m}", "top_metric", {"metric": m}, "single") for m in metrics]
            continue
        try:
            specs.append(Spec(name, name, strategy_settings(name, c, space, metrics), name))
        except ValueError as e:
            skipped.append(f"{name} ({e})")
    return specs, skipped


@dataclass
class SimulationReport:
    """Outputs of :func:`simulation_report`."""

    sim: Simulation
    curves: pd.DataFrame
    targets: pd.DataFrame
    markdown: str
    console: str
    highlight: list[str]


def _fmt_trainings(v: float, b_max: int) -> str:
    return f"> {b_max}" if not math.isfinite(v) else f"{v:.0f}"


def best_of(targets: pd.DataFrame, top: float, labels: Sequence[str]) -> pd.Series | None:
    """The row of ``targets`` with the fewest median trainings to ``top`` among ``labels`` (then most reached)."""
    t = targets[(targets["top"] == top) & targets["strategy"].isin(labels)]
    if t.empty:
        return None
    return t.assign(_m=t["trainings_median"], _r=-t["reached"], _h=t["trainings_hi"]).sort_values(
        ["_m", "_r", "_h"]).iloc[0]


def simulation_report(
    df: pd.DataFrame, metrics: Sequence[str], target: str, space: str, c: Mapping[str, Any], usable: np.ndarray
) -> SimulationReport:
    """Simulate every strategy on the usable architectures and describe the result.

    Args:
        df: the analysis's score table (one row per architecture).
        metrics: its metric columns.
        target: ground-truth column (its quality by the sign convention).
        space: search-space name (default metrics).
        c: the ``search`` config.
        usable: boolean mask [rows] of architectures with usable ground truth
            (ok record, training OK, finite target); undefined metric values
            do not remove an architecture.

    Returns:
        The :class:`SimulationReport`.
    """
    sc = c["simulate"]
    sign = quality_sign(target)
    sub = df.loc[usable].reset_index(drop=True)
    quality = sign * pd.to_numeric(sub[target], errors="coerce").to_numpy(dtype=float)
    scores = sub[list(metrics)]
    specs, skipped = simulation_specs(c, space, metrics)
    sim = simulate(scores, quality, specs, repeats=int(sc["repeats"]), pool_fraction=float(sc["pool_fraction"]),
                   max_budget=float(sc["max_budget"]), seed=int(c["seed"]))
    tops = tuple(float(t) for t in sc["tops"])
    cur = curves(sim, sign, float(sc["ci"]), tops)
    tgt = trainings_to_reach(sim, tops, float(sc["ci"]))
    try:
        headline = resolved_metric(c, space, metrics)
    except ValueError:
        headline = None
    top5 = tops[0]
    best_single = best_of(tgt, top5, [s.label for s in specs if s.kind == "single"])
    # chosen before any ground truth: the headline metric, the fixed combination and the fitted strategies
    a_priori = [s.label for s in specs if s.kind not in ("random", "single")] + ([f"top:{headline}"] if headline else [])
    best_strategy = best_of(tgt, top5, a_priori)
    highlight = ["random"]
    for lab in (f"top:{headline}" if headline else None,
                best_single["strategy"] if best_single is not None else None,
                *[s.label for s in specs if s.kind not in ("random", "single")]):
        if lab and lab not in highlight and lab in sim.trained:
            highlight.append(lab)
    md = _markdown(sim, tgt, cur, target, metrics, scores, headline, best_single, best_strategy, tops, c)
    if skipped:
        md += "\n\nNot simulated: " + "; ".join(skipped) + "."
    t5 = tgt[tgt["top"] == top5].set_index("strategy")
    console = (f"search simulation ({target}): {len(sim.trained)} strategies, {len(sim.pools)} pools of "
               f"{sim.n_pool}, budgets 1-{sim.max_budget}, {sim.seconds:.1f} s; top {top5:.0%}: random "
               f"{_fmt_trainings(t5.loc['random', 'trainings_median'], sim.max_budget) if 'random' in t5.index else '–'}")
    if best_strategy is not None:
        console += (f", best strategy {best_strategy['strategy']} "
                    f"{_fmt_trainings(best_strategy['trainings_median'], sim.max_budget)} trainings (median)")
    return SimulationReport(sim, cur, tgt, md, console, highlight)


def _markdown(sim: Simulation, tgt: pd.DataFrame, cur: pd.DataFrame, target: str,
              metrics: Sequence[str], scores: pd.DataFrame, headline: str | None, best_single: pd.Series | None,
              best_strategy: pd.Series | None, tops: Sequence[float], c: Mapping[str, Any]) -> str:
    b_max = sim.max_budget
    sc = c["simulate"]
    n_all = len(sim.quality)
    by = {t: tgt[tgt["top"] == t].set_index("strategy") for t in tops}
    fmt = lambda v: _fmt_trainings(v, b_max)  # noqa: E731
    parts = [
        f"Protocol: the {n_all} architectures with usable {target} are the population; each of {len(sim.pools)} "
        f"repeats draws a pool of {sim.n_pool} ({sc['pool_fraction']:.0%}) and every strategy searches that same "
        f"pool with budgets B = 1 … {b_max} ({sc['max_budget']:.0%} of the pool). Ground truth is seen only "
        "through the oracle, one charged training per architecture. Bands: central "
        f"{float(sc['ci']):.0%} of the repeats. Simulation time: {sim.seconds:.1f} s."]
    sentences = []
    for t in tops:
        row = by[t]
        if "random" not in row.index:
            continue
        k = int(row["k_top"].iloc[0])
        s = (f"To reach the pool's top {t:.0%} (its best {k}), random search needs a median of "
             f"{fmt(row.loc['random', 'trainings_median'])} trainings")
        if headline and f"top:{headline}" in row.index:
            s += f"; top-B by {headline} (the warm-start metric) needs {fmt(row.loc[f'top:{headline}', 'trainings_median'])}"
        if t == tops[0] and best_single is not None:
            s += (f"; the best single metric, {best_single['strategy'][4:]} (chosen with ground truth), needs "
                  f"{fmt(best_single['trainings_median'])}")
        if t == tops[0] and best_strategy is not None:
            r = best_strategy["ratio_to_random"]
            s += (f"; the best of the strategies fixed before any ground truth (top-B by the warm-start metric, "
                  f"the fixed combination, learned, ego), {best_strategy['strategy']}, needs "
                  f"{fmt(best_strategy['trainings_median'])}"
                  + (f" ({r:.2f} of random search's)" if math.isfinite(r) else ""))
        sentences.append(s + ".")
    parts.append(" ".join(sentences))
    # what was imputed
    missing = {m: int((~np.isfinite(pd.to_numeric(scores[m], errors="coerce").to_numpy(dtype=float))).sum())
               for m in metrics}
    missing = {m: v for m, v in missing.items() if v}
    if missing:
        parts.append("Undefined scores: " + ", ".join(f"{m} for {v} of {n_all}" for m, v in missing.items())
                     + ". No strategy drops these architectures: each undefined value gets the median rank of the "
                     "metric, and the fitted strategies (learned, ego) also get a 0/1 missing-value feature.")
    specs = {s.label: s for s in sim.specs}
    settings = [f"{s.label}: {s.settings}" for s in sim.specs if s.kind not in ("single", "random")]
    if settings:
        parts.append("Strategies: " + "; ".join(settings) + ". Single metrics (top:…) are ranked highest score "
                     "first, the analysis's sign convention, so a metric with negative τ picks badly.")
    rows = []
    order = ["random"] + [s.label for s in sim.specs if s.kind not in ("random", "single")]
    singles = tgt[(tgt["top"] == tops[0]) & (tgt["kind"] == "single")].sort_values(["trainings_median", "reached"],
                                                                                   ascending=[True, False])
    order += singles["strategy"].tolist()
    budgets = sorted({b for b in (1, 5, 10, 20, b_max) if b <= b_max})
    curv = cur.set_index(["strategy", "budget"])
    for lab in order:
        if lab not in specs:
            continue
        row = {"strategy": lab}
        for t in tops:
            r = by[t].loc[lab]
            row[f"top {t:.0%}: trainings [band]"] = (f"{fmt(r['trainings_median'])} "
                                                      f"[{fmt(r['trainings_lo'])}, {fmt(r['trainings_hi'])}]")
            row[f"top {t:.0%}: reached"] = f"{r['reached']:.0%}"
        for b in budgets:
            row[f"best at B={b}"] = curv.loc[(lab, b), "best_median"]
        rows.append(row)
    orc = curv.loc[("oracle", 1)]
    parts.append(md_table(pd.DataFrame(rows)) + f"\n\nOracle (the pool's best): median {target} "
                 f"{orc['best_median']:.3f} [{orc['best_lo']:.3f}, {orc['best_hi']:.3f}].")
    return "\n\n".join(parts)


def trained_quality(entries: Sequence[Any], df: pd.DataFrame, target: str, truth: str) -> dict[int, float]:
    """Arch -> quality of every architecture that counts as trained (NaN for a failed training).

    Args:
        entries: the analysis's merged entries (:class:`~tfnas.analysis.load.Entry`) of the main setting.
        df: their score table.
        target: ground-truth column.
        truth: ``train``: only architectures with a train record, their truth read from those records
            (a benchmark's truth in score records is ignored); ``any``: every usable ground truth.

    Raises:
        ValueError: ``truth`` is neither.
    """
    sign = quality_sign(target)
    if truth == "any":
        ok = usable_truth(df, target)
        return {int(a): sign * float(v) for a, v in zip(df["arch"][ok], df[target][ok])}
    if truth != "train":
        raise ValueError(f"search.truth must be 'train' or 'any', got {truth!r}")
    out = {}
    for e in entries:
        for path, source in zip(e.paths, e.sources):
            if source != "train":
                continue
            rec = results.load(path)
            t = rec.get("truth") or {}
            v = t.get(target)
            good = rec.get("status") == "ok" and truth_ok(t.get("status")) and isinstance(v, (int, float))
            q = sign * float(v) if good and math.isfinite(float(v)) else math.nan
            if math.isfinite(q) or e.arch not in out:
                out[e.arch] = q
    return out


def proposal(entries: Sequence[Any], df: pd.DataFrame, metrics: Sequence[str], target: str, space: str,
             c: Mapping[str, Any], results_dirs: Sequence[str]) -> dict[str, Any]:
    """The next batch of the search configured in ``c`` (the ``search`` group), from the analysed records.

    Returns:
        ``{"markdown", "console" (lines), "json"}``; ``json`` holds the
        strategy, its settings, budget, batch, trained archs with their
        ``target`` values, the best so far, and the command.

    Raises:
        ValueError: unknown strategy, bad budget or batch, no candidates.
    """
    settings = strategy_settings(str(c["strategy"]), c, space, metrics)
    cand = df[df["record_status"] == "ok"].set_index("arch")[list(metrics)]
    if cand.empty:
        raise ValueError("no scored candidate to search: every record is an error")
    trained = trained_quality(entries, df, target, str(c["truth"]))
    p = propose(cand, trained, str(c["strategy"]), settings, int(c["budget"]), int(c["batch"]), int(c["seed"]))
    first = next((path for e in entries for path, src in zip(e.paths, e.sources) if src == "score"), None)
    space_cfg = ((results.load(first).get("settings") or {}).get("space_cfg") or {}) if first else {}
    command = proposal_command(p, command_overrides(space, space_cfg, str(results_dirs[0]),
                                                    [str(x) for x in c["train_overrides"]]))
    sign = quality_sign(target)
    best = p.best()
    js = {"strategy": p.strategy, "settings": settings, "budget": p.budget, "spent": p.spent, "done": p.done,
          "batch": p.batch, "trained": p.trained, target: [sign * q for q in p.quality], "unused": p.unused,
          "best": {"arch": best[0], target: sign * best[1]} if best else None, "command": command}
    if p.done:
        console = [f"search {p.strategy}: budget of {p.budget} spent"
                   + (f"; best arch {best[0]} ({target} {sign * best[1]:.4g})" if best else "")]
    else:
        console = [f"search {p.strategy}: {p.spent}/{p.budget} trained; next batch of {len(p.batch)}:", command]
    return {"markdown": proposal_markdown(p, target, command), "console": console, "json": js}


def proposal_markdown(p: Proposal, target: str, command: str | None) -> str:
    """The proposal section of ``summary.md`` (and ``proposal.md``)."""
    sign = quality_sign(target)
    lines = [f"Strategy {p.strategy}, budget {p.budget}: {p.spent} trained by the search so far."]
    best = p.best()
    if best:
        lines.append(f"Best so far: arch {best[0]} ({target} = {sign * best[1]:.4g}).")
    if p.unused:
        lines.append(f"Trained but not chosen by this search (not used): {p.unused}.")
    if p.done:
        lines.append("The budget is spent: nothing more to train.")
    else:
        lines += [f"Next batch ({len(p.batch)}): {p.batch}", "", "```", command or "", "```"]
    return "\n".join(lines)


def _default_benchmark(space: str) -> str | None:
    """File name of the space's default benchmark (``conf/space/<space>.yaml``), None if unknown."""
    import yaml

    path = REPO_ROOT / "conf" / "space" / f"{space}.yaml"
    if not path.is_file():
        return None
    bench = (yaml.safe_load(path.read_text()) or {}).get("benchmark")
    return Path(str(bench)).name if bench else None


def command_overrides(space: str, space_cfg: Mapping[str, Any], results_dir: str, extra: Sequence[str]) -> list[str]:
    """``train.py`` overrides that name the same candidates as the score records and write next to them.

    A benchmark other than the space's default is printed as
    ``space.benchmark=/path/to/<file>``: records keep only its file name.

    Args:
        space: search-space name.
        space_cfg: the records' ``settings.space_cfg``.
        results_dir: where the train records must go (the search's records folder).
        extra: further overrides (e.g. ``experiment=quick``).
    """
    out = [f"space={space}"]
    if space_cfg.get("benchmark"):
        if space_cfg["benchmark"] != _default_benchmark(space):
            out.append(f"space.benchmark=/path/to/{space_cfg['benchmark']}")
    else:
        out += ["space.benchmark=null", f"space.generate={space_cfg.get('generate')}",
                f"space.generator_seed={space_cfg.get('generator_seed', 0)}"]
        if "num_hidden" in space_cfg:
            out.append(f"'space.num_hidden={list(space_cfg['num_hidden'])}'".replace(" ", ""))
    return out + [f"paths.results_dir={results_dir}", *extra]


def proposal_command(p: Proposal, overrides: Sequence[str]) -> str | None:
    """The ``train.py`` multirun command for the proposed batch (None when done)."""
    return None if p.done else train_command(p.batch, overrides)
