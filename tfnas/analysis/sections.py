"""The analysis of one search space, section by section: tables, figures and ``summary.md``.

:func:`analyze_space` runs the sections in order. Each section writes its
CSV files and figures into the output folder and adds a Markdown section to
``summary.md`` (and the same text to TensorBoard). A section that needs more
architectures than the records give says so in its Markdown and writes
nothing else, so that any number of architectures from 1 upwards can be
analysed:

- correlations: τ, ρ and r need :data:`~tfnas.analysis.stats.MIN_N` usable
  architectures per metric, bootstrap intervals
  :data:`~tfnas.analysis.stats.MIN_CI_N`;
- search simulation: ``search.simulate.min_archs`` architectures with usable
  ground truth (with ``search.simulate.enabled=auto``, the default);
- learned combination: :func:`~tfnas.analysis.combine.min_cv_archs` (three
  architectures per fold);
- ablation: repeats of the same architecture over seeds or minibatches.

Outputs (``out`` is the space's folder): ``scores.csv``, ``exclusions.csv``,
``correlations.csv``, ``topk.csv`` (top-k overlap), ``search_budget.csv``
and ``search_targets.csv`` (search with a training budget simulated on the
records' ground truth, :mod:`tfnas.search`), ``proposal.md`` and
``proposal.json`` (the next batch to train, with ``search.strategy``),
``combinations.csv``, ``ablation.csv`` and ``ablation_tau.csv`` (with
repeats), ``space_choices.csv``, ``space_cross.csv`` and
``space_subspace.json`` (NAS-Bench-BERT search-space view), figures (PNG and
PDF), ``summary.md`` and ``tensorboard/``.
"""

from __future__ import annotations

import difflib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tfnas.analysis import ablation as ablation_view
from tfnas.analysis import combine, plots, report
from tfnas.analysis.conventions import (
    DEFAULT_TARGETS,
    HEADLINE_METRICS,
    PUBLISHED,
    REFERENCES,
    default_targets,
    quality_label,
)
from tfnas.analysis.exclude import exclusion_counts, exclusion_rows, truth_problem, usable_truth
from tfnas.analysis.load import InputError, RecordSet, choose_setting, metric_names, settings_counts, truth_names, wide_table
from tfnas.analysis.stats import MIN_CI_N, MIN_N, correlation_table, top_k_table
from tfnas.schema import ConfigError
from tfnas.search import report as search_report

log = logging.getLogger(__name__)

#: Where the report sends readers for definitions and published figures (paths in the repository).
DOCS = {"metrics": "docs/METRICS.md", "spaces": "docs/SPACES.md", "paper": "docs/PAPER.md"}


class Outputs:
    """The files, figures and Markdown sections of one space's analysis.

    Args:
        out: the output folder (exists).
        config: the analysis config (``plots.formats``, ``plots.dpi`` are read).
    """

    def __init__(self, out: Path, config: dict[str, Any]):
        self.out = out
        self.config = config
        self.files: list[Path] = []
        self.figures: dict[str, Any] = {}
        self.texts: dict[str, str] = {}
        self.sections: list[str] = []

    def csv(self, name: str, df: pd.DataFrame) -> Path:
        """Write ``df`` as ``out/name``."""
        p = self.out / name
        df.to_csv(p, index=False)
        self.files.append(p)
        return p

    def figure(self, name: str, fig) -> None:
        """Save ``fig`` in every configured format and keep it for TensorBoard."""
        plots_cfg = self.config["plots"]
        self.files.extend(plots.save(fig, self.out / name, plots_cfg["formats"], plots_cfg["dpi"]))
        self.figures[f"figures/{name}"] = fig

    def section(self, title: str, body: str, tensorboard_tag: str | None = None) -> None:
        """Add a ``## title`` section to ``summary.md`` (and its body to TensorBoard under the tag)."""
        self.sections.append(f"## {title}\n\n{body}\n")
        if tensorboard_tag:
            self.texts[tensorboard_tag] = body


@dataclass
class SpaceAnalysis:
    """What every section of one space's analysis reads.

    Attributes:
        space: search-space name.
        config: the analysis config (``conf/analyze.yaml``, defaults filled in).
        outputs: where the sections write.
        records: every record read.
        entries: the merged records of this space (every setting).
        main: the entries of the main setting.
        setting: the main ``(seed, batch_index)``.
        setting_note: why that setting was chosen.
        table: :func:`~tfnas.analysis.load.wide_table` of ``main``.
        metrics: score columns of ``table``.
        targets: ground-truth columns analysed; the first is the primary one.
        correlations: ``correlations.csv`` once the correlation section ran.
    """

    space: str
    config: dict[str, Any]
    outputs: Outputs
    records: RecordSet
    entries: list
    main: list
    setting: tuple[int, int]
    setting_note: str
    table: pd.DataFrame
    metrics: list[str]
    targets: list[str]
    correlations: pd.DataFrame | None = None

    @property
    def primary(self) -> str:
        """The target tables are sorted by and figures drawn for."""
        return self.targets[0]

    @property
    def title(self) -> str:
        """Figure title prefix."""
        return f"{self.space}: "

    def ordered(self) -> list[str]:
        """Metrics sorted by |τ| with the primary target."""
        return report.sort_by_abs_tau(self.correlations, self.primary)["metric"].tolist()


def prepare_space(records: RecordSet, space: str, config: dict[str, Any], out: Path) -> SpaceAnalysis:
    """What the sections of one space read, with every option that names a metric checked; writes nothing.

    :func:`tfnas.tasks.analyze.analyze` prepares every space before it writes
    anything, so that a target or a metric name the records lack ends the run
    with the analysis folder as it was.

    Raises:
        InputError: a requested target is not in the records' ground truth,
            or the space has none of its default targets.
        ConfigError: ``combine``, ``learned.metrics``, ``learned.references``,
            ``search.metric``, ``search.combination`` or ``search.features``
            names a metric the records of the space do not have
            (:func:`check_metric_options`).
    """
    entries = records.of_space(space)
    setting, note = choose_setting(entries, config["main"]["seed"], config["main"]["batch_index"])
    main = [e for e in entries if e.setting == setting]
    truths = truth_names(main)
    if config["targets"]:
        targets = [config["targets"]] if isinstance(config["targets"], str) else list(config["targets"])
        missing = [t for t in targets if t not in truths]
        if missing:
            raise InputError(f"target(s) {missing} not in the records' ground truth {truths} ({space})")
    elif not truths and config["search"]["strategy"] and DEFAULT_TARGETS.get(space):
        targets = list(DEFAULT_TARGETS[space][:1])  # a search's first round: nothing trained yet
    else:
        try:
            targets = default_targets(space, truths)
        except ValueError as exc:
            raise InputError(str(exc)) from None
    metrics = metric_names(main)
    check_metric_options(config, metrics, space)
    table = wide_table(main)
    for t in targets:
        if t not in table.columns:
            table[t] = np.nan
    return SpaceAnalysis(space, config, Outputs(out, config), records, entries, main, setting, note, table,
                         metrics, targets)


def _unknown_metric(option: str, name: str, metrics: list[str], space: str) -> ConfigError:
    close = difflib.get_close_matches(name, metrics, n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    listing = ", ".join(metrics[:40]) + (", ..." if len(metrics) > 40 else "")
    return ConfigError(f"{option} names {name!r}, which the {space} records do not have{hint} "
                       f"(their metrics: {listing or 'none'})")


def check_metric_options(config: dict[str, Any], metrics: list[str], space: str) -> None:
    """Every metric named by an option is a metric of the records, whether or not that part runs.

    Checked: ``combine`` (null, or lists of at least two metrics), ``learned.metrics``,
    ``learned.references``, ``search.metric``, ``search.combination`` and
    ``search.features`` (the search's ``-name`` takes the lowest scores first).

    Raises:
        ConfigError: one line naming the option, the unknown name, the closest metric and the metrics there are.
    """
    combos = config.get("combine")
    if combos:
        for combo in combos:
            if isinstance(combo, str) or not isinstance(combo, (list, tuple)) or len(combo) < 2:
                raise ConfigError("combine must be null or a list of metric lists, each of two metrics or more "
                                  f"(combine=[[a,b],[a,b,c]]), got the item {combo}")
    named: list[tuple[str, str]] = [("combine", str(m)) for combo in combos or [] for m in combo]
    lc, sc = config["learned"], config["search"]
    named += [(f"learned.{k}", str(m)) for k in ("metrics", "references") for m in (lc.get(k) or [])]
    searched = [("search.metric", sc.get("metric"))] if sc.get("metric") else []
    searched += [(f"search.{k}", m) for k in ("combination", "features") for m in (sc.get(k) or [])]
    named += [(option, str(m).strip()[1:] if str(m).strip().startswith("-") else str(m).strip())
              for option, m in searched]
    known = set(metrics)
    for option, name in named:
        if name not in known:
            raise _unknown_metric(option, name, metrics, space)


def analyze_space(records: RecordSet, space: str, config: dict[str, Any], out: Path,
                  prepared: SpaceAnalysis | None = None) -> dict[str, Any]:
    """Every section for the records of one space, written into ``out``.

    Args:
        records: :func:`~tfnas.analysis.load.load_records` output.
        space: the space to analyse.
        config: the analysis config with every key of ``conf/analyze.yaml``.
        out: the output folder (exists).
        prepared: :func:`prepare_space`'s result for these arguments (default: prepared here).

    Returns:
        ``out_dir``, ``n_archs``, ``setting``, ``targets``, ``top`` (metrics
        by |τ| with the primary target), ``files`` (written paths),
        ``proposal`` (the next batch, with ``search.strategy``; else None),
        ``subspace`` (dict or None),
        ``combination`` (the cross-validation verdict) and ``console`` (the
        printed text).

    Raises:
        InputError, ConfigError: see :func:`prepare_space`.
    """
    a = prepared if prepared is not None else prepare_space(records, space, config, out)
    main, setting, note, targets = a.main, a.setting, a.setting_note, a.targets
    n_usable = _records_section(a)
    _correlation_section(a)
    search_console = _search_section(a)
    proposal = _proposal_section(a)
    verdict = _combination_section(a)
    _ablation_section(a)
    subspace = None
    if space.startswith("lts_gpt2") and config["space_view"] in (True, "auto"):
        _gpt_space_view(a.outputs, config, space)
    elif config["space_view"] is True or (config["space_view"] == "auto" and space == "nasbench_bert"):
        subspace = _space_view(a.outputs, config)
    _write_summary(a)

    info = {"n_archs": len(main), "setting_note": note, "n_usable": n_usable, "n_skipped": len(records.skipped)}
    console = report.console_summary(space, info, a.correlations, a.primary, config["console_top"])
    console += "".join(f"\n   {line}" for line in search_console + (proposal or {}).get("console", []))
    if subspace:
        console += (f"\n   search space: suggested {subspace['describe']}: median {subspace['target']} "
                    f"{subspace['median']:.2f} vs {subspace['median_full']:.2f} (full space)")
    console += f"\n   {verdict['text']}\n   report: {out / 'summary.md'}"
    top = report.sort_by_abs_tau(a.correlations, a.primary)[["metric", "n", "kendall_tau", "kendall_ci_low",
                                                             "kendall_ci_high"]]
    return {"out_dir": str(out), "n_archs": len(main), "setting": setting, "targets": targets,
            "top": top.to_dict("records"), "files": [str(p) for p in a.outputs.files],
            "proposal": proposal, "subspace": subspace,
            "combination": {k: v for k, v in verdict.items() if k != "fold_tau"}, "console": console}


def _records_section(a: SpaceAnalysis) -> int:
    """scores.csv, exclusions.csv and the counts; returns the number of archs with usable primary truth."""
    o, records, config, primary = a.outputs, a.records, a.config, a.primary
    o.csv("scores.csv", a.table)
    excl = exclusion_rows(a.main, a.metrics, a.targets)
    o.csv("exclusions.csv", excl)
    counts = exclusion_counts(a.main, a.metrics, primary)
    n_usable = int(sum(1 for e in a.main if e.status == "ok" and truth_problem(e.truth, primary) is None))
    lines = [
        f"results folders: {', '.join(records.dirs)}",
        f"record files: {records.n_files}; valid records: {records.n_records}; skipped (not records): "
        f"{len(records.skipped)}"
        + (f"; left out by where={config['where']}: {records.filtered_out}" if config["where"] else ""),
        f"main setting: {a.setting_note}",
        "settings present (seed, batch_index) → archs: "
        + ", ".join(f"{s} → {n}" for s, n in sorted(settings_counts(a.entries).items())),
        f"architectures in the main setting: {len(a.main)}; with usable {primary}: {n_usable}",
        f"metrics: {len(a.metrics)}; targets: {', '.join(a.targets)} "
        f"(quality = {', '.join(map(quality_label, a.targets))})",
        "merging: records of the same (space, arch, seed, batch_index) are merged; the ground truth comes from "
        "one source: the benchmark's (score records) when there is one, else the train records'",
    ]
    if records.conflicts:
        lines.append(f"conflicting values for the same metric in merged records: {len(records.conflicts)} "
                     f"(first kept; first: {records.conflicts[0]}); select one sweep with "
                     f"{records.conflict_hint or '+where.<setting>=<value>'}")
    if records.truth_conflicts:
        lines.append(f"records whose ground truth differs from the truth kept and is not used: "
                     f"{len(records.truth_conflicts)} (first: {records.truth_conflicts[0]}); analyse the trained "
                     "truth alone with +where.source=train")
    lines += [f"skipped: {why}" for _, why in records.skipped[:5]]
    o.section("Records", report.bullet(lines), "summary/records")
    kinds_arch = excl[excl["metric"] == "*"].groupby(["target", "kind"]).size()
    arch_lines = [f"{kind} ({tgt}): {n}" for (tgt, kind), n in kinds_arch.items()]
    body = ("Each excluded (architecture, metric) is counted once, under the first reason that applies "
            f"(record error, then ground truth of {primary}, then the score). Every reason is listed in "
            "`exclusions.csv`.\n\n" + (report.bullet(arch_lines) + "\n\n" if arch_lines else "")
            + report.md_table(counts))
    o.section(f"Architectures per metric and exclusions (target {primary})", body, "tables/exclusions")
    return n_usable


def _correlation_section(a: SpaceAnalysis) -> None:
    """correlations.csv, the sorted table against the paper, scatter grid, τ bars (and heatmap)."""
    o, config, primary, targets = a.outputs, a.config, a.primary, a.targets
    corr = correlation_table(a.table, a.metrics, targets, config["bootstrap"], config["ci"], config["seed"])
    order = {t: i for i, t in enumerate(targets)}
    a.correlations = corr = corr.assign(_t=corr["target"].map(order), _a=-corr["kendall_tau"].abs().fillna(-1)
                                        ).sort_values(["_t", "_a"]).drop(columns=["_t", "_a"]).reset_index(drop=True)
    o.csv("correlations.csv", corr)
    body = (f"Signed correlations between each score and the quality {quality_label(primary)} (higher = better "
            f"architecture), Kendall τ-b, Spearman ρ and Pearson r from scipy.stats; {int(config['ci'] * 100)}% "
            f"percentile bootstrap CIs over {config['bootstrap']} resamples of the architectures (seed "
            f"{config['seed']}). Paper columns: |τ|, |ρ| published by Serianni & Kalita (2023) "
            f"(`{DOCS['paper']}`: NAS-Bench-NLP: PTB test loss over 8,794 archs; NAS-Bench-BERT: GLUE over 500 "
            f"archs); the paper gives signs only where noted. Metric definitions: `{DOCS['metrics']}`.\n\n"
            + report.correlation_markdown(corr, a.space, primary, config["ci"]))
    rows = corr[corr["target"] == primary]
    body += _references_paragraph(a.space, rows)
    too_few = rows[rows["kendall_tau"].isna()]
    if len(too_few):
        body += (f"\n\nNo correlation (fewer than {MIN_N} usable architectures, or constant values): "
                 + ", ".join(f"{r.metric} (n={r.n})" for r in too_few.itertuples()))
    no_ci = rows[rows["kendall_tau"].notna() & (rows["n"] < MIN_CI_N)]
    if config["bootstrap"] > 0 and len(no_ci):
        body += (f"\n\nBootstrap CIs skipped: they need at least {MIN_CI_N} usable architectures; "
                 + ", ".join(f"{r.metric} has {r.n}" for r in no_ci.itertuples()) + ".")
    o.section(f"Correlation with {primary}, sorted by |τ|", body, "tables/correlations")
    ordered = a.ordered()
    if len(targets) > 1:
        o.section("Kendall τ per target", report.md_table(report.pivot_tau(corr, ordered, targets)),
                  "tables/tau_per_target")
    if a.metrics:
        o.figure("scatter", plots.scatter_grid(a.table, ordered, primary, corr, a.title, config["plots"]["log_ratio"]))
        if rows["kendall_tau"].notna().any():
            o.figure("tau_bars", plots.tau_bars(corr, primary, PUBLISHED.get((a.space, primary)), config["ci"], a.title))
        if len(targets) > 1:
            o.figure("tau_heatmap", plots.tau_heatmap(corr, ordered, targets, a.title))


def _references_paragraph(space: str, rows: pd.DataFrame) -> str:
    """The published ρ on the same architectures (:data:`REFERENCES`) beside our best metric, when the space has them."""
    refs = REFERENCES.get(space)
    if not refs:
        return ""
    text = "\n\nReference figures on these architectures (Spearman ρ with the validation perplexity, published): " + \
        "; ".join(f"{name} {rho:.3f}" for name, rho in refs) + "."
    ranked = rows[rows["spearman_rho"].notna()]
    if len(ranked):
        best = ranked.loc[ranked["spearman_rho"].abs().idxmax()]
        text += (f" Best label-free metric here: `{best['metric']}`, |ρ| = {abs(best['spearman_rho']):.3f} "
                 f"over {int(best['n'])} architectures (best reference {max(r for _, r in refs):.3f}).")
    return text


def _search_section(a: SpaceAnalysis) -> list[str]:
    """topk.csv, and the search simulation (search_budget.csv, search_targets.csv, search.png); console lines."""
    o, config, primary = a.outputs, a.config, a.primary
    topk = top_k_table(a.table, a.metrics, primary, config["top_fraction"])
    o.csv("topk.csv", topk)
    if len(topk):
        o.section(f"Top-{config['top_fraction']:.0%} overlap ({primary})",
                  "How many of the metric's top k are in the true top k (expected by chance: k²/n).\n\n"
                  + report.md_table(topk.sort_values("overlap", ascending=False), {"expected_random": 1}),
                  "tables/topk")
    sc = config["search"]
    usable = usable_truth(a.table, primary)
    enabled, min_archs = sc["simulate"]["enabled"], int(sc["simulate"]["min_archs"])
    title = f"Search with a budget ({primary})"
    if not a.metrics or enabled is False:
        return []
    if enabled == "auto" and usable.sum() < min_archs:
        o.section(title, f"Skipped: the search simulation needs at least {min_archs} architectures with usable "
                         f"{primary} (search.simulate.min_archs); {int(usable.sum())} have it.", "tables/search")
        return []
    rep = search_report.simulation_report(a.table, a.metrics, primary, a.space, sc, usable)
    o.csv("search_budget.csv", rep.curves)
    o.csv("search_targets.csv", rep.targets)
    o.section(title, rep.markdown, "tables/search")
    o.figure("search", plots.search_budget_plot(rep.curves, primary, rep.highlight, a.title))
    return [rep.console]


def _proposal_section(a: SpaceAnalysis) -> dict[str, Any] | None:
    """proposal.md / proposal.json when ``search.strategy`` is set: the next batch to train."""
    sc = a.config["search"]
    if not sc["strategy"]:
        return None
    res = search_report.proposal(a.main, a.table, a.metrics, a.primary, a.space, sc, a.records.dirs)
    for name, text in (("proposal.md", res["markdown"] + "\n"), ("proposal.json", json.dumps(res["json"], indent=1))):
        (a.outputs.out / name).write_text(text)
        a.outputs.files.append(a.outputs.out / name)
    a.outputs.section(f"Next batch to train ({sc['strategy']})", res["markdown"], "tables/proposal")
    return res["json"] | {"console": res["console"]}


def _references(a: SpaceAnalysis, wanted: list[str] | None) -> list[str]:
    """Metrics the learned combination is set against: ``learned.references``, else the space's headline metrics."""
    names = list(wanted) if wanted is not None else list(HEADLINE_METRICS.get(a.space, ()))
    return [m for m in names if m in a.metrics]


def _combination_section(a: SpaceAnalysis) -> dict[str, Any]:
    """combinations.csv and its figure; returns the cross-validation verdict."""
    o, config, primary, corr, df = a.outputs, a.config, a.primary, a.correlations, a.table
    parts = []
    best = report.sort_by_abs_tau(corr, primary).head(1)
    if len(best) and np.isfinite(best["kendall_tau"].iloc[0]):
        b = best.iloc[0]
        parts.append(pd.DataFrame([{"name": f"best single: {b['metric']}", "kind": "best_single",
                                    "metrics": b["metric"], "evaluation": "in-sample (chosen by |τ|)",
                                    **{k: b[k] for k in corr.columns if k != "metric"}}]))
    combos = config["combine"] if config["combine"] else combine.auto_combos(corr, primary, config["combine_sizes"])
    if combos:
        parts.append(combine.rank_combinations(df, combos, primary, corr, config["bootstrap"], config["ci"],
                                               config["seed"]))
    verdict: dict[str, Any] = {"text": "learned combination disabled (learned.enabled=false)"}
    if config["learned"]["enabled"]:
        lc = config["learned"]
        cv_table, verdict = combine.cross_validated(
            df, lc["metrics"] or a.metrics, primary, folds=int(config["folds"]), ridge=float(lc["ridge"]),
            top_m=int(lc["top_m"]), min_coverage=float(lc["min_coverage"]), n_boot=config["bootstrap"],
            ci=config["ci"], seed=config["seed"], references=_references(a, lc["references"]))
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
        if comb["kendall_tau"].notna().any():
            o.figure("combinations", plots.combination_bars(comb, a.title))
    else:
        body += f"No combination: it needs at least two metrics with a correlation (≥ {MIN_N} usable architectures)."
    o.section(f"Combined metrics ({primary})", body, "tables/combinations")
    return verdict


def _ablation_section(a: SpaceAnalysis) -> None:
    """ablation.csv, ablation_tau.csv and figures, when the records repeat architectures."""
    abl = ablation_view.ablation(a.entries, a.metrics, a.primary, a.setting)
    if abl.empty:
        return
    o = a.outputs
    o.csv("ablation.csv", abl.spread)
    o.csv("ablation_tau.csv", abl.repeat_tau)
    body = ("Spread of each metric's score across repeats of the same architecture (within) against across "
            "architectures (between); ratio = within_sd / between_sd. τ columns: Kendall τ of each repeat "
            f"with {quality_label(a.primary)}.\n\n" + report.md_table(abl.spread))
    o.section("Ablation: minibatches and seeds", body, "tables/ablation")
    ordered = a.ordered()
    for axis in abl.axes:
        o.figure(f"ablation_{axis}", plots.ablation_boxes(abl.scores, abl.spread, axis, ordered))
    if len(abl.repeat_tau):
        o.figure("ablation_tau", plots.ablation_tau(abl.repeat_tau, ordered))


def _write_summary(a: SpaceAnalysis) -> None:
    """summary.md, then the TensorBoard summary."""
    o, config = a.outputs, a.config
    summary = (f"# tfnas analysis: {a.space}\n\nMetrics are defined in `{DOCS['metrics']}`, the search spaces in "
               f"`{DOCS['spaces']}` and the published figures compared with in `{DOCS['paper']}` (in the tfnas "
               "repository).\n\n" + "\n".join(o.sections))
    summary += "\n## Files\n\n" + report.bullet(p.name for p in o.files) + "\n"
    (o.out / "summary.md").write_text(summary)
    o.files.append(o.out / "summary.md")
    if config["tensorboard"]:
        tb = Path(config["tensorboard_dir"]) if config["tensorboard_dir"] else o.out / "tensorboard"
        if len(a.records.spaces()) > 1 and config["tensorboard_dir"]:
            tb = tb / a.space
        scalars = {f"tau/{r.target}/{r.metric}": r.kendall_tau for r in a.correlations.itertuples()}
        report.write_tensorboard(tb, {"summary": summary, **o.texts}, o.figures, scalars)
        o.files.append(tb)


def _gpt_space_view(o: Outputs, config: dict[str, Any], space: str) -> None:
    """The LTS GPT-2 design choices against valid_ppl, from the set folder (no scores needed)."""
    from tfnas.analysis import space_gpt
    from tfnas.spaces.lts_gpt2 import SETS

    which = space[len("lts_gpt2_"):]
    title = f"Search space ({space}): which design choices drive valid_ppl"
    folder = Path(str(config["data_dir"])) / "lts" / "saved_logs" / SETS.get(which, "")
    if which not in SETS or not folder.is_dir():
        o.section(title, f"skipped: LTS set folder {folder} not found")
        return
    choices = space_gpt.choice_table(space_gpt.design_table(folder))
    o.csv("space_choices.csv", choices)
    numeric = choices[choices["kind"] == "numeric"].sort_values("spearman_rho", key=abs, ascending=False)
    groups = choices[choices["kind"] == "group"]
    body = ("Each design choice (one value per architecture) against the quality −valid_ppl of the benchmark's "
            f"trained architectures, Kendall τ-b and Spearman ρ; then the median valid_ppl per value.\n\n"
            + report.md_table(numeric[["choice", "n", "kendall_tau", "spearman_rho"]]) + "\n\n"
            + report.md_table(groups[["choice", "value", "n", "median_ppl"]]))
    o.section(title, body, "tables/search_space")


def _space_view(o: Outputs, config: dict[str, Any]) -> dict[str, Any] | None:
    """The NAS-Bench-BERT search-space view from the benchmark file (no scores needed)."""
    from tfnas.analysis import space as space_view

    title = "Search space (NAS-Bench-BERT)"
    if config["benchmark_bert"] is None:
        o.section(title, "skipped: benchmark_bert is null")
        return None
    path = Path(config["benchmark_bert"]).expanduser()
    if not path.is_file():
        msg = f"skipped: benchmark file {path} not found (set benchmark_bert=PATH or null)"
        log.warning(msg)
        o.section(title, msg)
        return None
    sp = config["space"]
    res = space_view.analyze_space(path, sp["target"], min_gap=sp["min_gap"], min_tau=sp["min_tau"],
                                   min_archs=sp["min_archs"])
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
    o.section(title, report.space_markdown(res, path), "tables/search_space")
    o.figure("space_boxes", plots.space_boxes(res["archs"], res["layers"], t))
    o.figure("space_subspace", plots.subspace_plot(res["archs"][t].to_numpy(dtype=float), sub.members,
                                                   sub.describe(), t))
    return info
