"""Figures of the analysis, in the style of the paper's scatter and bar plots.

Every function returns a :class:`matplotlib.figure.Figure` built without
pyplot (no global state, no display needed); :func:`save` writes it as PNG and
PDF. Scatter points are rasterised inside the PDF to keep it small with
thousands of architectures.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from tfnas.analysis.conventions import Published, quality_label, quality_sign
from tfnas.analysis.exclude import usable

NCOLS = 4
PANEL_W, PANEL_H = 3.4, 2.9


def save(fig: Figure, stem: str | Path, formats: Sequence[str] = ("png", "pdf"), dpi: int = 150) -> list[Path]:
    """Write ``fig`` as ``stem.png``, ``stem.pdf`` (or the given formats); returns the paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        p = stem.with_suffix(f".{fmt}")
        fig.savefig(p, dpi=dpi, bbox_inches="tight")
        paths.append(p)
    return paths


def _grid(n: int, ncols: int = NCOLS, w: float = PANEL_W, h: float = PANEL_H) -> tuple[Figure, list]:
    ncols = max(1, min(ncols, n))
    nrows = max(1, math.ceil(n / ncols))
    fig = Figure(figsize=(w * ncols, h * nrows + 0.6), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def x_scale(x: np.ndarray, log_ratio: float = 1e3) -> tuple[str, float]:
    """The x-axis scale for a metric's values, and the linear threshold of a symlog axis.

    Same-sign values whose 1st and 99th percentiles of |x| differ by more than
    ``log_ratio`` get a log axis (``symlog`` for negative ones, linear only
    within the smallest |x|). Sign-mixed values get ``symlog`` only when they
    are heavy-tailed (99th percentile of |x| over its median above
    √log_ratio), with the linear range up to the lower quartile of |x|;
    values scattered around zero stay linear.

    Returns:
        ``(scale, linthresh)`` with scale in ``linear``, ``log``, ``symlog``.
    """
    x = x[np.isfinite(x)]
    a = np.abs(x[x != 0])
    if x.size < 2 or a.size < 2:
        return "linear", 0.0
    lo, med, hi = np.quantile(a, [0.01, 0.5, 0.99])
    if (x > 0).all() or (x < 0).all():
        if lo > 0 and hi / lo > log_ratio:
            return ("log", 0.0) if (x > 0).all() else ("symlog", float(a.min()))
        return "linear", 0.0
    if med > 0 and hi / med > math.sqrt(log_ratio):
        return "symlog", float(np.quantile(a, 0.25))
    return "linear", 0.0


def _apply_scale(ax, x: np.ndarray, log_ratio: float) -> None:
    scale, linthresh = x_scale(x, log_ratio)
    if scale == "log":
        ax.set_xscale("log")
    elif scale == "symlog":
        ax.set_xscale("symlog", linthresh=linthresh)


def scatter_grid(
    df: pd.DataFrame, metrics: Sequence[str], target: str, corr: pd.DataFrame, title: str = "", log_ratio: float = 1e3
) -> Figure:
    """One panel per metric: score (x) against ``target`` (y), τ and ρ in each panel's title.

    Args:
        df: score table of the main setting.
        metrics: metrics in panel order.
        target: ground-truth column (plotted in its own units).
        corr: correlation table (τ, ρ, n are read from it).
        title: figure title prefix (e.g. the space).
        log_ratio: dynamic range above which the x axis becomes logarithmic.
    """
    c = corr[corr["target"] == target].set_index("metric")
    fig, axes = _grid(len(metrics))
    better = "lower is better" if quality_sign(target) < 0 else "higher is better"
    for ax, m in zip(axes, metrics):
        mask = usable(df, m, target)
        x = df[m].to_numpy(dtype=float)[mask]
        y = pd.to_numeric(df[target], errors="coerce").to_numpy(dtype=float)[mask]
        ax.scatter(x, y, s=7, alpha=0.55, linewidths=0, color="tab:blue", rasterized=True)
        if x.size:
            _apply_scale(ax, x, log_ratio)
        r = c.loc[m] if m in c.index else None
        if r is not None and np.isfinite(r["kendall_tau"]):
            stat = f"τ = {r['kendall_tau']:+.3f}   ρ = {r['spearman_rho']:+.3f}   n = {int(r['n'])}"
        else:
            stat = f"n = {int(mask.sum())} (too few / constant)"
        ax.set_title(f"{m}\n{stat}", fontsize=9)
        ax.set_xlabel("score", fontsize=8)
        ax.set_ylabel(target, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3, linewidth=0.5)
    fig.suptitle(f"{title}metric score vs {target} ({better}); τ, ρ against quality {quality_label(target)}",
                 fontsize=11)
    return fig


def tau_bars(
    corr: pd.DataFrame, target: str, published: Mapping[str, Published] | None = None, ci: float = 0.95, title: str = ""
) -> Figure:
    """Horizontal bars of Kendall τ per metric with bootstrap-CI error bars, sorted by τ.

    Published |τ| (docs/PAPER.md) are marked where known: at the published sign,
    or at the sign of our τ when the paper gives only the magnitude.
    """
    c = corr[(corr["target"] == target) & corr["kendall_tau"].notna()].sort_values("kendall_tau")
    fig = Figure(figsize=(7.5, 0.32 * max(len(c), 3) + 1.4), layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(c))
    tau = c["kendall_tau"].to_numpy()
    err = np.vstack([tau - c["kendall_ci_low"].to_numpy(), c["kendall_ci_high"].to_numpy() - tau])
    err = np.where(np.isfinite(err), np.maximum(err, 0), 0)
    colors = ["tab:blue" if t >= 0 else "tab:red" for t in tau]
    ax.barh(y, tau, xerr=err, color=colors, alpha=0.8, capsize=2, error_kw={"linewidth": 0.8})
    ax.set_yticks(y, c["metric"].tolist(), fontsize=8)
    ax.axvline(0, color="black", linewidth=0.6)
    shown = False
    for yi, (m, t) in enumerate(zip(c["metric"], tau)):
        p = (published or {}).get(m)
        if p is not None:
            sign = p.sign if p.sign is not None else (1 if t >= 0 else -1)
            ax.plot(sign * p.tau, yi, marker="D", color="black", markersize=4, linestyle="none",
                    label=None if shown else "paper |τ| (paper sign where known, else ours)")
            shown = True
    if shown:
        ax.legend(fontsize=8, loc="lower right")
    ax.set_xlabel(f"Kendall τ with {quality_label(target)} ({int(round(ci * 100))}% bootstrap CI)", fontsize=9)
    ax.set_title(f"{title}Kendall τ per metric, target {target}", fontsize=10)
    ax.grid(axis="x", alpha=0.3, linewidth=0.5)
    return fig


def tau_heatmap(corr: pd.DataFrame, metrics: Sequence[str], targets: Sequence[str], title: str = "") -> Figure:
    """Kendall τ of every metric (rows) with every target (columns), annotated."""
    piv = corr.pivot(index="metric", columns="target", values="kendall_tau").reindex(index=list(metrics),
                                                                                      columns=list(targets))
    fig = Figure(figsize=(1.0 * len(targets) + 3.5, 0.3 * len(metrics) + 1.5), layout="constrained")
    ax = fig.subplots()
    v = piv.to_numpy(dtype=float)
    lim = max(0.05, float(np.nanmax(np.abs(v)))) if np.isfinite(v).any() else 1.0
    im = ax.imshow(v, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
    ax.set_xticks(range(len(targets)), list(targets), rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(metrics)), list(metrics), fontsize=8)
    for i in range(v.shape[0]):
        for j in range(v.shape[1]):
            if np.isfinite(v[i, j]):
                ax.text(j, i, f"{v[i, j]:.2f}", ha="center", va="center", fontsize=6.5)
    fig.colorbar(im, ax=ax, label="Kendall τ with quality")
    ax.set_title(f"{title}Kendall τ per metric and target", fontsize=10)
    return fig


def search_budget_plot(curves: pd.DataFrame, target: str, strategies: Sequence[str], title: str = "") -> Figure:
    """Best architecture found vs trainings spent: one line per strategy, its band shaded, random and oracle.

    Args:
        curves: ``search_budget.csv`` rows (:func:`tfnas.search.simulate.curves`).
        target: the ground-truth column (y axis, in its own units).
        strategies: strategy labels to draw (``random`` dotted grey); the
            ``oracle`` rows (each pool's best) are always drawn, dashed black.
    """
    fig = Figure(figsize=(7.0, 4.6), layout="constrained")
    ax = fig.subplots()
    if curves.empty:
        ax.text(0.5, 0.5, "no search simulation", ha="center", transform=ax.transAxes)
        return fig
    for i, label in enumerate([*strategies, "oracle"]):
        g = curves[curves["strategy"] == label].sort_values("budget")
        if g.empty:
            continue
        style = (dict(color="black", linestyle="--") if label == "oracle" else
                 dict(color="gray", linestyle=":") if label == "random" else dict(color=f"C{i}"))
        ax.plot(g["budget"], g["best_median"], label=label, linewidth=1.5, **style)
        ax.fill_between(g["budget"], g["best_lo"], g["best_hi"], color=style["color"], alpha=0.12, linewidth=0)
    ax.set_xscale("log")
    ticks = [b for b in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000) if b <= curves["budget"].max()]
    ax.set_xticks(ticks, [str(b) for b in ticks])
    better = "lower is better" if quality_sign(target) < 0 else "higher is better"
    ax.set_xlabel("trainings spent (budget B)")
    ax.set_ylabel(f"{target} of the best found ({better})")
    r = curves.iloc[0]
    ax.set_title(f"{title}search with a budget: {int(r['repeats'])} random pools of {int(r['n_pool'])}\n"
                 "(median over pools, band: central 95 %)", fontsize=10)
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3, linewidth=0.5)
    return fig


def space_boxes(archs: pd.DataFrame, layers: pd.DataFrame, target: str = "glue") -> Figure:
    """Box plots of ``target`` per value of each design choice (NAS-Bench-BERT).

    Architecture-level choices: one box per value over architectures.
    Layer-level choices: one box per value over *layers*, each layer
    carrying its architecture's ``target``.
    """
    from tfnas.analysis.space import ARCH_CHOICES, LAYER_CHOICES, _natural

    choices = list(ARCH_CHOICES) + list(LAYER_CHOICES)
    fig, axes = _grid(len(choices), ncols=4, w=3.3, h=3.0)
    y_of = dict(zip(archs["arch"], archs[target]))
    for ax, c in zip(axes, choices):
        if c in ARCH_CHOICES:
            vals = sorted(archs[c].unique(), key=_natural)
            data = [archs.loc[archs[c] == v, target].to_numpy(dtype=float) for v in vals]
            what = "architectures"
        else:
            vals = sorted(layers[c].unique(), key=_natural)
            data = [layers.loc[layers[c] == v, "arch"].map(y_of).to_numpy(dtype=float) for v in vals]
            what = "layers"
        ax.boxplot(data, showfliers=True, flierprops={"markersize": 2})
        labels = [f"{v}\nn={d.size}\nmed {np.median(d):.1f}" if d.size else f"{v}\nn=0" for v, d in zip(vals, data)]
        ax.set_xticks(range(1, len(vals) + 1), labels, fontsize=7 if len(vals) <= 4 else 6)
        ax.set_title(f"{c} (over {what})", fontsize=9)
        ax.set_ylabel(target, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(axis="y", alpha=0.3, linewidth=0.5)
    fig.suptitle(f"NAS-Bench-BERT: {target} per design choice (n and median under each box)", fontsize=11)
    return fig


def subspace_plot(y: np.ndarray, members: np.ndarray, label: str, target: str = "glue") -> Figure:
    """Distribution of ``target`` over the full benchmark, inside and outside the suggested sub-space."""
    fig = Figure(figsize=(6.5, 3.8), layout="constrained")
    ax = fig.subplots()
    data = [y, y[members], y[~members]]
    names = [f"full space\n(n={y.size})", f"sub-space\n(n={int(members.sum())})", f"rest\n(n={int((~members).sum())})"]
    keep = [i for i, d in enumerate(data) if d.size]
    ax.boxplot([data[i] for i in keep], orientation="horizontal", showfliers=True, flierprops={"markersize": 2})
    ax.set_yticks(range(1, len(keep) + 1), [names[i] for i in keep], fontsize=8)
    for j, i in enumerate(keep, start=1):
        ax.annotate(f"median {np.median(data[i]):.2f}", (np.median(data[i]), j), xytext=(0, 9),
                    textcoords="offset points", ha="center", fontsize=7, color="tab:red")
    ax.set_xlabel(target)
    ax.set_title(f"suggested sub-space: {label}", fontsize=9)
    ax.grid(axis="x", alpha=0.3, linewidth=0.5)
    return fig


def ablation_boxes(scores: pd.DataFrame, spread: pd.DataFrame, axis: str, metrics: Sequence[str]) -> Figure:
    """Per metric, one box per architecture: its scores across repeats of ``axis`` (batch or seed)."""
    s = scores[scores["axis"] == axis]
    metrics = [m for m in metrics if (s["metric"] == m).any()]
    fig, axes = _grid(max(len(metrics), 1), w=3.4, h=2.8)
    sp = spread[spread["axis"] == axis].set_index("metric")
    for ax, m in zip(axes, metrics):
        sm = s[s["metric"] == m]
        order = sm.groupby("arch")["score"].mean().sort_values().index.tolist()
        ax.boxplot([sm.loc[sm["arch"] == a, "score"].to_numpy() for a in order], showfliers=False)
        ax.set_xticks(range(1, len(order) + 1), [str(a) for a in order], fontsize=6, rotation=90)
        ratio = sp.loc[m, "ratio"] if m in sp.index else math.nan
        ax.set_title(f"{m}\nwithin/between sd = {ratio:.3f}", fontsize=8.5)
        ax.set_xlabel("architecture (sorted by mean score)", fontsize=7)
        ax.set_ylabel("score", fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
    what = "minibatches" if axis == "batch" else "initialisation seeds"
    fig.suptitle(f"Ablation: score spread across {what}, per architecture", fontsize=11)
    return fig


def ablation_tau(repeat_tau: pd.DataFrame, metrics: Sequence[str]) -> Figure:
    """Kendall τ of each repeat (minibatch or seed) per metric, one marker per repeat."""
    fig = Figure(figsize=(max(5.0, 0.45 * len(metrics) + 2), 4.0), layout="constrained")
    ax = fig.subplots()
    xs = {m: i for i, m in enumerate(metrics)}
    for k, (axis, color) in enumerate((("batch", "tab:blue"), ("seed", "tab:orange"))):
        t = repeat_tau[(repeat_tau["axis"] == axis) & repeat_tau["metric"].isin(xs)]
        if t.empty:
            continue
        x = t["metric"].map(xs).to_numpy(dtype=float) + (k - 0.5) * 0.25
        ax.scatter(x, t["kendall_tau"], s=14, alpha=0.7, color=color, label=f"per {axis}")
    ax.set_xticks(range(len(metrics)), list(metrics), rotation=60, ha="right", fontsize=7)
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_ylabel("Kendall τ with quality")
    ax.set_title("Ablation: τ of each repeat", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3, linewidth=0.5)
    return fig


def combination_bars(rows: pd.DataFrame, title: str = "") -> Figure:
    """τ with CI of single metrics and combinations (rows: name, kendall_tau, CI bounds, evaluation)."""
    rows = rows[rows["kendall_tau"].notna()].iloc[::-1]
    fig = Figure(figsize=(8.0, 0.34 * max(len(rows), 3) + 1.4), layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(rows))
    tau = rows["kendall_tau"].to_numpy(dtype=float)
    err = np.vstack([tau - rows["kendall_ci_low"].to_numpy(dtype=float), rows["kendall_ci_high"].to_numpy(dtype=float) - tau])
    err = np.where(np.isfinite(err), np.maximum(err, 0), 0)
    colors = ["tab:green" if str(e).startswith("out-of-fold") else "tab:gray" for e in rows["evaluation"]]
    ax.barh(y, tau, xerr=err, color=colors, alpha=0.85, capsize=2, error_kw={"linewidth": 0.8})
    ax.set_yticks(y, rows["name"].tolist(), fontsize=7)
    ax.axvline(0, color="black", linewidth=0.6)
    ax.set_xlabel("Kendall τ (green: cross-validated, out-of-fold; gray: in-sample)")
    ax.set_title(f"{title}combined metrics", fontsize=10)
    ax.grid(axis="x", alpha=0.3, linewidth=0.5)
    return fig
