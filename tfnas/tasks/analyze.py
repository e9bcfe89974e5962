"""The analysis job: records -> tables, figures, ``summary.md`` and a TensorBoard summary.

``analyze(cfg)`` is a pure function of the config (``conf/analyze.yaml``); the
Hydra entry ``analyze.py`` only calls it. For each search space found in the
records it writes, under ``out_dir`` (or ``out_dir/<space>`` when the records
hold several spaces):

- ``scores.csv``: one row per architecture of the main setting;
- ``exclusions.csv``: every reason an architecture is left out;
- ``correlations.csv``: τ, ρ, r with p-values and bootstrap CIs;
- ``search_budget.csv``, ``search_targets.csv``, ``search.png``: search
  with a training budget simulated on the records' ground truth
  (:mod:`tfnas.search`); ``topk.csv``: top-k overlap; ``proposal.md`` /
  ``proposal.json``: the next batch to train when ``search.strategy`` is set;
- ``combinations.csv``: rank combinations (in-sample) and the cross-validated
  learned combination;
- ``ablation.csv``, ``ablation_tau.csv``: when records repeat architectures
  over seeds or minibatches;
- ``space_choices.csv``, ``space_cross.csv``: the NAS-Bench-BERT
  search-space view;
- figures (PNG and PDF), ``summary.md``, and ``tensorboard/``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

import tfnas.hydra_support  # noqa: F401  (registers the resolvers of conf/analyze.yaml, which _config resolves)
from tfnas.analysis import ablation as ablation_mod
from tfnas.analysis import combine, plots, report
from tfnas.analysis.conventions import DEFAULT_TARGETS, HEADLINE_METRICS, PUBLISHED, default_targets, quality_label
from tfnas.analysis.exclude import exclusion_counts, exclusion_rows, truth_problem, usable_truth
from tfnas.analysis.load import RecordSet, choose_setting, load_records, metric_names, settings_counts, truth_names, wide_table
from tfnas.analysis.stats import correlation_table, top_k_table
from tfnas.search import report as search_report
from tfnas.paths import REPO_ROOT

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "results_dir": None, "out_dir": "analysis_out", "where": {}, "targets": None,
    "main": {"seed": None, "batch_index": None},
    "bootstrap": 1000, "ci": 0.95, "seed": 0,
    "top_fraction": 0.1, "search": search_report.DEFAULTS,
    "combine": None, "combine_sizes": [2, 3],
    "learned": {"enabled": True, "metrics": None, "ridge": 0.1, "top_m": 3, "min_coverage": 0.9, "references": None},
    "folds": 5, "tensorboard": True, "tensorboard_dir": None,
    "space_view": "auto", "benchmark_bert": None, "space": {"target": "glue", "min_gap": 2.0, "min_tau": 0.2, "min_archs": 20},
    "plots": {"formats": ["png", "pdf"], "dpi": 150, "log_ratio": 1000.0},
    "console_top": 8,
}


def _merge(base: dict, over: Mapping) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(base[k], v) if isinstance(base.get(k), dict) and isinstance(v, Mapping) else v
    return out


def _config(cfg: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_container(cfg, resolve=True)
    cfg = {k: v for k, v in dict(cfg).items() if k != "hydra"}
    c = _merge(DEFAULTS, cfg)
    if c["results_dir"] in (None, "", []):
        raise ValueError("results_dir is not set: python analyze.py results_dir=DIR [out_dir=DIR]")
    if c["space_view"] not in ("auto", True, False):
        raise ValueError(f"space_view must be auto, true or false, got {c['space_view']!r}")
    return c


def _resolve(p: str | Path | None) -> Path | None:
    # Relative data paths are relative to where the job runs; fall back to the repository root.
    if p is None:
        return None
    p = Path(p)
    if p.is_absolute() or p.exists():
        return p
    alt = REPO_ROOT / p
    return alt if alt.exists() else p


class _Outputs:
    """Collects written files, figures for TensorBoard and Markdown sections."""

    def __init__(self, out: Path, c: dict[str, Any]):
        self.out = out
        self.c = c
        self.files: list[Path] = []
        self.figures: dict[str, Any] = {}
        self.texts: dict[str, str] = {}
        self.sections: list[str] = []

    def csv(self, name: str, df: pd.DataFrame) -> Path:
        p = self.out / name
        df.to_csv(p, index=False)
        self.files.append(p)
        return p

    def figure(self, name: str, fig) -> None:
        self.files.extend(plots.save(fig, self.out / name, self.c["plots"]["formats"], self.c["plots"]["dpi"]))
        self.figures[f"figures/{name}"] = fig

    def section(self, title: str, body: str, tb_tag: str | None = None) -> None:
        self.sections.append(f"## {title}\n\n{body}\n")
        if tb_tag:
            self.texts[tb_tag] = body


def analyze(cfg: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    """Run the whole analysis described in the module docstring.

    Args:
        cfg: the ``analyze`` config (DictConfig or plain mapping); see
            ``conf/analyze.yaml`` for every key.

    Returns:
        ``{space: {...}}`` with, per space, ``out_dir``, ``n_archs``,
        ``setting``, ``targets``, ``top`` (metrics by |τ| with the primary
        target), ``files`` (written paths), ``selection`` (arch list or
        None), ``subspace`` (dict or None), and ``console`` (the printed text).

    Raises:
        ValueError: no results folder given, no records, or a requested
            target/metric that the records do not have.
        FileNotFoundError: a results folder does not exist.
    """
    c = _config(cfg)
    rs = load_records(c["results_dir"], where=c["where"])
    out_root = Path(c["out_dir"])
    out_root.mkdir(parents=True, exist_ok=True)
    spaces = rs.spaces()
    result: dict[str, Any] = {}
    for space in spaces:
        out = out_root if len(spaces) == 1 else out_root / space
        out.mkdir(parents=True, exist_ok=True)
        result[space] = _analyze_space(rs, space, c, out)
    print("\n\n".join(r["console"] for r in result.values()), flush=True)
    return result


@dataclass
class _Ctx:
    """What every section of one space's analysis reads."""

    space: str
    c: dict[str, Any]
    o: _Outputs
    rs: RecordSet
    entries: list
    main: list
    setting: tuple[int, int]
    note: str
    df: pd.DataFrame
    metrics: list[str]
    targets: list[str]
    corr: pd.DataFrame | None = None

    @property
    def primary(self) -> str:
        return self.targets[0]

    @property
    def title(self) -> str:
        return f"{self.space}: "

    def ordered(self) -> list[str]:
        """Metrics sorted by |τ| with the primary target."""
        return report.sort_by_abs_tau(self.corr, self.primary)["metric"].tolist()


def _analyze_space(rs: RecordSet, space: str, c: dict[str, Any], out: Path) -> dict[str, Any]:
    entries = rs.of_space(space)
    setting, note = choose_setting(entries, c["main"]["seed"], c["main"]["batch_index"])
    main = [e for e in entries if e.setting == setting]
    truths = truth_names(main)
    if c["targets"]:
        targets = [c["targets"]] if isinstance(c["targets"], str) else list(c["targets"])
        missing = [t for t in targets if t not in truths]
        if missing:
            raise ValueError(f"target(s) {missing} not in the records' ground truth {truths} ({space})")
    elif not truths and c["search"]["strategy"] and DEFAULT_TARGETS.get(space):
        targets = list(DEFAULT_TARGETS[space][:1])  # a search's first round: nothing trained yet
    else:
        targets = default_targets(space, truths)
    df = wide_table(main)
    for t in targets:
        if t not in df.columns:
            df[t] = np.nan
    ctx = _Ctx(space, c, _Outputs(out, c), rs, entries, main, setting, note, df, metric_names(main), targets)
    n_usable = _records_section(ctx)
    _correlation_section(ctx)
    search_console = _search_section(ctx)
    proposal = _proposal_section(ctx)
    verdict = _combination_section(ctx)
    _ablation_section(ctx)
    sub_info = None
    if c["space_view"] is True or (c["space_view"] == "auto" and space == "nasbench_bert"):
        sub_info = _space_view(ctx.o, c)
    _write_summary(ctx)

    info = {"n_archs": len(main), "setting_note": note, "n_usable": n_usable, "n_skipped": len(rs.skipped)}
    console = report.console_summary(space, info, ctx.corr, ctx.primary, c["console_top"])
    console += "".join(f"\n   {line}" for line in search_console + (proposal or {}).get("console", []))
    if sub_info:
        console += (f"\n   search space: suggested {sub_info['describe']}: median {sub_info['target']} "
                    f"{sub_info['median']:.2f} vs {sub_info['median_full']:.2f} (full space)")
    console += f"\n   {verdict['text']}\n   report: {out / 'summary.md'}"
    top = report.sort_by_abs_tau(ctx.corr, ctx.primary)[["metric", "n", "kendall_tau", "kendall_ci_low",
                                                          "kendall_ci_high"]]
    return {"out_dir": str(out), "n_archs": len(main), "setting": setting, "targets": targets,
            "top": top.to_dict("records"), "files": [str(p) for p in ctx.o.files],
            "proposal": proposal, "subspace": sub_info,
            "combination": {k: v for k, v in verdict.items() if k != "fold_tau"}, "console": console}


def _records_section(ctx: _Ctx) -> int:
    """scores.csv, exclusions.csv and the counts; returns the number of archs with usable primary truth."""
    o, rs, c, primary = ctx.o, ctx.rs, ctx.c, ctx.primary
    o.csv("scores.csv", ctx.df)
    excl = exclusion_rows(ctx.main, ctx.metrics, ctx.targets)
    o.csv("exclusions.csv", excl)
    counts = exclusion_counts(ctx.main, ctx.metrics, primary)
    n_usable = int(sum(1 for e in ctx.main if e.status == "ok" and truth_problem(e.truth, primary) is None))
    lines = [
        f"results folders: {', '.join(rs.dirs)}",
        f"record files: {rs.n_files}; valid records: {rs.n_records}; skipped (not records): {len(rs.skipped)}"
        + (f"; left out by where={c['where']}: {rs.filtered_out}" if c["where"] else ""),
        f"main setting: {ctx.note}",
        "settings present (seed, batch_index) → archs: "
        + ", ".join(f"{s} → {n}" for s, n in sorted(settings_counts(ctx.entries).items())),
        f"architectures in the main setting: {len(ctx.main)}; with usable {primary}: {n_usable}",
        f"metrics: {len(ctx.metrics)}; targets: {', '.join(ctx.targets)} "
        f"(quality = {', '.join(map(quality_label, ctx.targets))})",
        "merging: records of the same (space, arch, seed, batch_index) are merged; a train record's ground "
        "truth takes precedence over a score record's",
    ]
    if rs.conflicts:
        lines.append(f"conflicting values for the same metric in merged records: {len(rs.conflicts)} "
                     f"(first kept; first: {rs.conflicts[0]}); select one sweep with where=...")
    lines += [f"skipped: {why}" for _, why in rs.skipped[:5]]
    o.section("Records", report.bullet(lines), "summary/records")
    kinds_arch = excl[excl["metric"] == "*"].groupby(["target", "kind"]).size()
    arch_lines = [f"{kind} ({tgt}): {n}" for (tgt, kind), n in kinds_arch.items()]
    body = ("Each excluded (architecture, metric) is counted once, under the first reason that applies "
            f"(record error, then ground truth of {primary}, then the score). Every reason is listed in "
            "`exclusions.csv`.\n\n" + (report.bullet(arch_lines) + "\n\n" if arch_lines else "")
            + report.md_table(counts))
    o.section(f"Architectures per metric and exclusions (target {primary})", body, "tables/exclusions")
    return n_usable


def _correlation_section(ctx: _Ctx) -> None:
    """correlations.csv, the sorted table against the paper, scatter grid, τ bars (and heatmap)."""
    o, c, primary, targets = ctx.o, ctx.c, ctx.primary, ctx.targets
    corr = correlation_table(ctx.df, ctx.metrics, targets, c["bootstrap"], c["ci"], c["seed"])
    order = {t: i for i, t in enumerate(targets)}
    ctx.corr = corr = corr.assign(_t=corr["target"].map(order), _a=-corr["kendall_tau"].abs().fillna(-1)).sort_values(
        ["_t", "_a"]).drop(columns=["_t", "_a"]).reset_index(drop=True)
    o.csv("correlations.csv", corr)
    body = (f"Signed correlations between each score and the quality {quality_label(primary)} (higher = better "
            f"architecture), Kendall τ-b, Spearman ρ and Pearson r from scipy.stats; {int(c['ci'] * 100)}% "
            f"percentile bootstrap CIs over {c['bootstrap']} resamples of the architectures (seed {c['seed']}). "
            "Paper columns: |τ|, |ρ| from PAPER.md (NAS-Bench-NLP: PTB test loss over 8,794 archs; NAS-Bench-BERT: "
            "GLUE over 500 archs); the paper gives signs only where noted.\n\n"
            + report.correlation_markdown(corr, ctx.space, primary, c["ci"]))
    too_few = corr[(corr["target"] == primary) & corr["kendall_tau"].isna()]
    if len(too_few):
        body += "\n\nNot enough usable architectures (< 3) or constant values: " + ", ".join(
            f"{r.metric} (n={r.n})" for r in too_few.itertuples())
    o.section(f"Correlation with {primary}, sorted by |τ|", body, "tables/correlations")
    ordered = ctx.ordered()
    if len(targets) > 1:
        o.section("Kendall τ per target", report.md_table(report.pivot_tau(corr, ordered, targets)),
                  "tables/tau_per_target")
    if ctx.metrics:
        o.figure("scatter", plots.scatter_grid(ctx.df, ordered, primary, corr, ctx.title, c["plots"]["log_ratio"]))
        o.figure("tau_bars", plots.tau_bars(corr, primary, PUBLISHED.get((ctx.space, primary)), c["ci"], ctx.title))
        if len(targets) > 1:
            o.figure("tau_heatmap", plots.tau_heatmap(corr, ordered, targets, ctx.title))


def _search_section(ctx: _Ctx) -> list[str]:
    """topk.csv, and the search simulation (search_budget.csv, search_targets.csv, search.png); console lines."""
    o, c, primary = ctx.o, ctx.c, ctx.primary
    topk = top_k_table(ctx.df, ctx.metrics, primary, c["top_fraction"])
    o.csv("topk.csv", topk)
    if len(topk):
        o.section(f"Top-{c['top_fraction']:.0%} overlap ({primary})",
                  "How many of the metric's top k are in the true top k (expected by chance: k²/n).\n\n"
                  + report.md_table(topk.sort_values("overlap", ascending=False), {"expected_random": 1}),
                  "tables/topk")
    sc = c["search"]
    usable = usable_truth(ctx.df, primary)
    enabled = sc["simulate"]["enabled"]
    if not ctx.metrics or enabled is False or (enabled == "auto" and usable.sum() < sc["simulate"]["min_archs"]):
        return []
    rep = search_report.simulation_report(ctx.df, ctx.metrics, primary, ctx.space, sc, usable)
    o.csv("search_budget.csv", rep.curves)
    o.csv("search_targets.csv", rep.targets)
    o.section(f"Search with a budget ({primary})", rep.markdown, "tables/search")
    o.figure("search", plots.search_budget_plot(rep.curves, primary, rep.highlight, ctx.title))
    return [rep.console]


def _proposal_section(ctx: _Ctx) -> dict[str, Any] | None:
    """proposal.md / proposal.json when ``search.strategy`` is set: the next batch to train."""
    sc = ctx.c["search"]
    if not sc["strategy"]:
        return None
    res = search_report.proposal(ctx.main, ctx.df, ctx.metrics, ctx.primary, ctx.space, sc, ctx.rs.dirs)
    for name, text in (("proposal.md", res["markdown"] + "\n"), ("proposal.json", json.dumps(res["json"], indent=1))):
        (ctx.o.out / name).write_text(text)
        ctx.o.files.append(ctx.o.out / name)
    ctx.o.section(f"Next batch to train ({sc['strategy']})", res["markdown"], "tables/proposal")
    return res["json"] | {"console": res["console"]}


def _references(ctx: _Ctx, wanted: list[str] | None) -> list[str]:
    """Metrics the learned combination is set against: ``learned.references``, else the space's headline metrics."""
    names = list(wanted) if wanted is not None else list(HEADLINE_METRICS.get(ctx.space, ()))
    return [m for m in names if m in ctx.metrics]


def _combination_section(ctx: _Ctx) -> dict[str, Any]:
    """combinations.csv and its figure; returns the cross-validation verdict."""
    o, c, primary, corr, df = ctx.o, ctx.c, ctx.primary, ctx.corr, ctx.df
    parts = []
    best = report.sort_by_abs_tau(corr, primary).head(1)
    if len(best) and np.isfinite(best["kendall_tau"].iloc[0]):
        b = best.iloc[0]
        parts.append(pd.DataFrame([{"name": f"best single: {b['metric']}", "kind": "best_single",
                                    "metrics": b["metric"], "evaluation": "in-sample (chosen by |τ|)",
                                    **{k: b[k] for k in corr.columns if k != "metric"}}]))
    combos = c["combine"] if c["combine"] else combine.auto_combos(corr, primary, c["combine_sizes"])
    if combos:
        parts.append(combine.rank_combinations(df, combos, primary, corr, c["bootstrap"], c["ci"], c["seed"]))
    verdict: dict[str, Any] = {"text": "learned combination disabled (learned.enabled=false)"}
    if c["learned"]["enabled"]:
        lc = c["learned"]
        cv_table, verdict = combine.cross_validated(
            df, lc["metrics"] or ctx.metrics, primary, folds=int(c["folds"]), ridge=float(lc["ridge"]),
            top_m=int(lc["top_m"]), min_coverage=float(lc["min_coverage"]), n_boot=c["bootstrap"], ci=c["ci"],
            seed=c["seed"], references=_references(ctx, lc["references"]))
        parts.append(cv_table)
    parts = [p for p in parts if len(p)]
    comb = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=combine.COMBINATION_COLUMNS)
    o.csv("combinations.csv", comb)
    body = ("Rank average / rank product rows pick their metrics and orient them with ground truth on the same "
            "architectures (in-sample, optimistic). The cross-validated rows fit everything on the training folds "
            f"and are scored on pooled out-of-fold predictions only.\n\n**{verdict['text']}**\n\n")
    if len(comb):
        view = comb[["name", "evaluation", "n"]].copy()
        view["τ [CI]"] = [report.ci_str(r.kendall_tau, r.kendall_ci_low, r.kendall_ci_high) for r in comb.itertuples()]
        view["ρ [CI]"] = [report.ci_str(r.spearman_rho, r.spearman_ci_low, r.spearman_ci_high)
                          for r in comb.itertuples()]
        body += report.md_table(view)
        o.figure("combinations", plots.combination_bars(comb, ctx.title))
    o.section(f"Combined metrics ({primary})", body, "tables/combinations")
    return verdict


def _ablation_section(ctx: _Ctx) -> None:
    """ablation.csv, ablation_tau.csv and figures, when the records repeat architectures."""
    abl = ablation_mod.ablation(ctx.entries, ctx.metrics, ctx.primary, ctx.setting)
    if abl.empty:
        return
    o = ctx.o
    o.csv("ablation.csv", abl.spread)
    o.csv("ablation_tau.csv", abl.repeat_tau)
    body = ("Spread of each metric's score across repeats of the same architecture (within) against across "
            "architectures (between); ratio = within_sd / between_sd. τ columns: Kendall τ of each repeat "
            f"with {quality_label(ctx.primary)}.\n\n" + report.md_table(abl.spread))
    o.section("Ablation: minibatches and seeds", body, "tables/ablation")
    ordered = ctx.ordered()
    for axis in abl.axes:
        o.figure(f"ablation_{axis}", plots.ablation_boxes(abl.scores, abl.spread, axis, ordered))
    if len(abl.repeat_tau):
        o.figure("ablation_tau", plots.ablation_tau(abl.repeat_tau, ordered))


def _write_summary(ctx: _Ctx) -> None:
    """summary.md, then the TensorBoard summary."""
    o, c = ctx.o, ctx.c
    summary = f"# tfnas analysis: {ctx.space}\n\n" + "\n".join(o.sections)
    summary += "\n## Files\n\n" + report.bullet(p.name for p in o.files) + "\n"
    (o.out / "summary.md").write_text(summary)
    o.files.append(o.out / "summary.md")
    if c["tensorboard"]:
        tb = Path(c["tensorboard_dir"]) if c["tensorboard_dir"] else o.out / "tensorboard"
        if len(ctx.rs.spaces()) > 1 and c["tensorboard_dir"]:
            tb = tb / ctx.space
        scalars = {f"tau/{r.target}/{r.metric}": r.kendall_tau for r in ctx.corr.itertuples()}
        report.write_tensorboard(tb, {"summary": summary, **o.texts}, o.figures, scalars)
        o.files.append(tb)


def _space_view(o: _Outputs, c: dict[str, Any]) -> dict[str, Any] | None:
    from tfnas.analysis import space as space_mod

    path = _resolve(c["benchmark_bert"])
    if path is None:
        o.section("Search space (NAS-Bench-BERT)", "skipped: benchmark_bert is null")
        return None
    if not path.is_file():
        msg = f"skipped: benchmark file {path} not found (set benchmark_bert=PATH or null)"
        log.warning(msg)
        o.section("Search space (NAS-Bench-BERT)", msg)
        return None
    sp = c["space"]
    res = space_mod.analyze_space(path, sp["target"], min_gap=sp["min_gap"], min_tau=sp["min_tau"], min_archs=sp["min_archs"])
    o.csv("space_choices.csv", res["choices"])
    o.csv("space_cross.csv", res["cross"])
    sub = res["subspace"]
    t = res["target"]
    info = {"describe": sub.describe(), "restrictions": sub.restrictions, "steps": sub.steps, "size": sub.size,
            "full_size": sub.full_size, "n_bench": sub.n_bench, "n_bench_full": sub.n_bench_full,
            "median": sub.median, "median_full": sub.median_full, "median_rest": sub.median_rest,
            "mean": sub.mean, "mean_full": sub.mean_full, "mean_rest": sub.mean_rest, "target": t}
    (o.out / "space_subspace.json").write_text(json.dumps(info, indent=1))
    o.files.append(o.out / "space_subspace.json")
    arch_rows = res["choices"][res["choices"]["level"] == "architecture"]
    layer_rows = res["choices"][(res["choices"]["level"] == "layer")]
    body = "\n\n".join([
        f"Read with `tfnas.spaces.nasbench_bert.benchmark.load_benchmark` from `{path}` ({sub.n_bench_full} architectures); "
        f"{t} per value of each design choice (no scores needed).",
        "Architecture-level choices:\n\n" + report.md_table(arch_rows.drop(columns=["level", "group", "tau_fraction"]), {"n": 0}),
        "Hidden size × depth:\n\n" + report.md_table(res["cross"]),
        "Layer-level choices: over layers (each layer carrying its architecture's score), over architectures "
        "where any / all layers use the value; τ(fraction) = Kendall τ between the fraction of layers using the "
        f"value and {t}.\n\n" + report.md_table(layer_rows.drop(columns=["level"])),
        "Suggested sub-space: **" + sub.describe() + "**\n\n" + report.bullet(sub.steps) + "\n\n" + report.bullet([
            f"size: {sub.size:,} of {sub.full_size:,} architectures ({100 * sub.size / sub.full_size:.1f}%)",
            f"benchmark architectures inside: {sub.n_bench} of {sub.n_bench_full}",
            f"median {t}: {sub.median:.2f} inside vs {sub.median_full:.2f} full space ({sub.median_rest:.2f} outside)",
            f"mean {t}: {sub.mean:.2f} inside vs {sub.mean_full:.2f} full space ({sub.mean_rest:.2f} outside)",
        ]),
    ])
    o.section("Search space (NAS-Bench-BERT)", body, "tables/search_space")
    o.figure("space_boxes", plots.space_boxes(res["archs"], res["layers"], t))
    o.figure("space_subspace", plots.subspace_plot(res["archs"][t].to_numpy(dtype=float), sub.members, sub.describe(), t))
    return info
