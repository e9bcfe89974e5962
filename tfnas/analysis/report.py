"""Markdown tables and sections of ``summary.md``, the console summary and the TensorBoard summary."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from tfnas.analysis.conventions import published as published_value
from tfnas.analysis.conventions import quality_label


def fmt(v: Any, digits: int = 3) -> str:
    """A table cell: floats to ``digits`` decimals (p-values in 2 significant digits), NaN as ``–``."""
    if v is None:
        return "–"
    if isinstance(v, (float, np.floating)):
        if math.isnan(v):
            return "–"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return f"{v:.{digits}f}"
    return str(v)


def md_table(df: pd.DataFrame, digits: Mapping[str, int] | None = None, default_digits: int = 3) -> str:
    """``df`` as a GitHub Markdown table (``|`` in cells escaped)."""
    digits = dict(digits or {})
    cols = list(df.columns)
    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        cells = []
        for c, v in zip(cols, row):
            if isinstance(v, (float, np.floating)) and c.endswith("_p") and math.isfinite(v):
                cell = f"{v:.2g}"
            else:
                cell = fmt(v, digits.get(c, default_digits))
            cells.append(cell.replace("|", "\\|"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ci_str(est: float, lo: float, hi: float) -> str:
    """``0.372 [0.341, 0.401]`` (``–`` when undefined)."""
    if not np.isfinite(est):
        return "–"
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{est:+.3f}"
    return f"{est:+.3f} [{lo:+.3f}, {hi:+.3f}]"


def sort_by_abs_tau(corr: pd.DataFrame, target: str) -> pd.DataFrame:
    """Rows of ``target``, sorted by |τ| descending (undefined τ last)."""
    c = corr[corr["target"] == target].copy()
    c["_k"] = c["kendall_tau"].abs().fillna(-1)
    return c.sort_values("_k", ascending=False).drop(columns="_k")


def correlation_markdown(corr: pd.DataFrame, space: str, target: str, ci: float) -> str:
    """The main correlation table with the paper's published |τ| next to ours."""
    rows = []
    for r in sort_by_abs_tau(corr, target).itertuples():
        p = published_value(space, target, r.metric)
        sign = "–" if p is None or p.sign is None else ("+" if p.sign > 0 else "−")
        rows.append({
            "metric": r.metric, "n": r.n,
            f"τ [{int(round(ci * 100))}% CI]": ci_str(r.kendall_tau, r.kendall_ci_low, r.kendall_ci_high),
            "τ p": fmt(r.kendall_p) if not np.isfinite(r.kendall_p) else f"{r.kendall_p:.2g}",
            f"ρ [{int(round(ci * 100))}% CI]": ci_str(r.spearman_rho, r.spearman_ci_low, r.spearman_ci_high),
            "r": fmt(r.pearson_r),
            "paper |τ|": fmt(p.tau) if p else "–",
            "paper |ρ|": fmt(p.rho) if p else "–",
            "paper sign": sign,
            "|τ| − paper": fmt(abs(r.kendall_tau) - p.tau) if p and np.isfinite(r.kendall_tau) else "–",
        })
    return md_table(pd.DataFrame(rows))


def console_summary(space: str, info: Mapping[str, Any], corr: pd.DataFrame, target: str, top: int = 8) -> str:
    """A few lines for the terminal: counts, then the top metrics by |τ| with CI."""
    lines = [f"== {space}: {info['n_archs']} architectures ({info['setting_note']}); "
             f"{info['n_usable']} with usable {target}; {info['n_skipped']} non-record file(s) skipped"]
    lines.append(f"   top metrics by |τ| with {quality_label(target)}:")
    for r in sort_by_abs_tau(corr, target).head(top).itertuples():
        lines.append(f"   {r.metric:<32s} n={r.n:<5d} τ={ci_str(r.kendall_tau, r.kendall_ci_low, r.kendall_ci_high)}"
                     f"  ρ={fmt(r.spearman_rho)}")
    return "\n".join(lines)


def write_tensorboard(log_dir: str | Path, texts: Mapping[str, str], figures: Mapping[str, Any],
                      scalars: Mapping[str, float] | None = None) -> Path:
    """Write tables as text, figures as images and scalars into a TensorBoard event file.

    Args:
        log_dir: the event file's folder (created).
        texts: tag -> Markdown text (``SummaryWriter.add_text``).
        figures: tag -> matplotlib Figure (``add_figure``).
        scalars: tag -> value (``add_scalar``, step 0).

    Returns:
        ``log_dir``.
    """
    from torch.utils.tensorboard import SummaryWriter

    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    writer = SummaryWriter(log_dir=str(log_dir))
    try:
        for tag, text in texts.items():
            writer.add_text(tag, text, global_step=0)
        for tag, fig in figures.items():
            writer.add_figure(tag, fig, global_step=0, close=False)
        for tag, value in (scalars or {}).items():
            if np.isfinite(value):
                writer.add_scalar(tag, float(value), global_step=0)
    finally:
        writer.close()
    return log_dir


def bullet(lines: Iterable[str]) -> str:
    """Markdown bullet list."""
    return "\n".join(f"- {x}" for x in lines)


def pivot_tau(corr: pd.DataFrame, metrics: Sequence[str], targets: Sequence[str]) -> pd.DataFrame:
    """metric × target table of τ (for the per-task section of BERT)."""
    piv = corr.pivot(index="metric", columns="target", values="kendall_tau").reindex(index=list(metrics),
                                                                                      columns=list(targets))
    return piv.reset_index()


def space_markdown(res: Mapping[str, Any], path: Path) -> str:
    """The NAS-Bench-BERT search-space view of ``summary.md`` from :func:`tfnas.analysis.space.analyze_space`'s result."""
    sub, t = res["subspace"], res["target"]
    arch_rows = res["choices"][res["choices"]["level"] == "architecture"]
    layer_rows = res["choices"][res["choices"]["level"] == "layer"]
    return "\n\n".join([
        f"Read with `tfnas.spaces.nasbench_bert.benchmark.load_benchmark` from `{path}` ({sub.n_bench_full} architectures); "
        f"{t} per value of each design choice (no scores needed).",
        "Architecture-level choices:\n\n" + md_table(arch_rows.drop(columns=["level", "group", "tau_fraction"]),
                                                     {"n": 0}),
        "Hidden size × depth:\n\n" + md_table(res["cross"]),
        "Layer-level choices: over layers (each layer carrying its architecture's score), over architectures "
        "where any / all layers use the value; τ(fraction) = Kendall τ between the fraction of layers using the "
        f"value and {t}.\n\n" + md_table(layer_rows.drop(columns=["level"])),
        "Suggested sub-space: **" + sub.describe() + "**\n\n" + bullet(sub.steps) + "\n\n" + bullet([
            f"size: {sub.size:,} of {sub.full_size:,} architectures ({100 * sub.size / sub.full_size:.1f}%)",
            f"benchmark architectures inside: {sub.n_bench} of {sub.n_bench_full}",
            f"median {t}: {sub.median:.2f} inside vs {sub.median_full:.2f} full space ({sub.median_rest:.2f} outside)",
            f"mean {t}: {sub.mean:.2f} inside vs {sub.mean_full:.2f} full space ({sub.mean_rest:.2f} outside)",
        ]),
    ])
