"""LTS GPT-2 search-space view: which design choices drive the trained perplexity.

Needs no scores: reads one LTS set (:func:`tfnas.spaces.lts_gpt2.read_set`,
200 trained decoders with ``valid_ppl``) and relates each design choice to
the quality −``valid_ppl``:

- numeric choices, one value per architecture: depth ``n_layer``, width
  ``d_model``, embedding width ``d_embed``, ``div_val``, the mean heads per
  layer, the mean and total inner size (Σ ``d_inner``), and the
  non-embedding parameters they add up to; each with Kendall τ-b and
  Spearman ρ (scipy.stats) against the quality;
- grouped medians of ``valid_ppl`` per value of the categorical choices
  (``d_model``, ``d_embed``, ``div_val``, depth in thirds of its range,
  mean heads rounded to the space's values).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from tfnas.spaces.lts_gpt2 import read_set

CHOICE_COLUMNS = ["choice", "kind", "value", "n", "median_ppl", "kendall_tau", "spearman_rho"]
NUMERIC = ("n_layer", "d_model", "d_embed", "div_val", "mean_heads", "mean_d_inner", "total_d_inner", "nonembedding")
GROUPED = ("d_model", "d_embed", "div_val", "depth", "heads")


def design_table(folder: str | Path) -> pd.DataFrame:
    """One row per architecture of the set: its design choices and ``valid_ppl`` (NaN when missing)."""
    rows = []
    for a in read_set(folder):
        s = a.spec
        raw_embed = a.meta["model_config"].get("d_embed", s["d_embed"])
        rows.append({
            "arch": a.index, "benchmark_id": a.benchmark_id, "n_layer": s["n_layer"], "d_model": s["d_model"],
            "d_embed": s["d_embed"] if raw_embed != -1 else -1, "div_val": s["div_val"],
            "mean_heads": float(np.mean(s["n_head"])), "mean_d_inner": float(np.mean(s["d_inner"])),
            "total_d_inner": int(sum(s["d_inner"])), "nonembedding": a.meta["params"].get("nonembedding", np.nan),
            "valid_ppl": a.truth.get("valid_ppl", np.nan),
        })  # fmt: skip
    return pd.DataFrame(rows)


def choice_table(designs: pd.DataFrame) -> pd.DataFrame:
    """τ and ρ of every numeric choice with −valid_ppl, and the median ppl per value of the grouped ones."""
    d = designs[np.isfinite(designs["valid_ppl"])]
    quality = -d["valid_ppl"].to_numpy(dtype=float)
    out = []
    for c in NUMERIC:
        x = d[c].to_numpy(dtype=float)
        ok = np.isfinite(x)
        if ok.sum() < 3 or np.unique(x[ok]).size < 2:
            continue
        out.append({"choice": c, "kind": "numeric", "value": "", "n": int(ok.sum()),
                    "median_ppl": float(np.median(d["valid_ppl"][ok])),
                    "kendall_tau": float(stats.kendalltau(x[ok], quality[ok]).statistic),
                    "spearman_rho": float(stats.spearmanr(x[ok], quality[ok]).statistic)})  # fmt: skip
    groups = {
        "d_model": d["d_model"], "d_embed": d["d_embed"], "div_val": d["div_val"],
        "depth": pd.cut(d["n_layer"], bins=[1, 6, 11, 16], labels=["2-6", "7-11", "12-16"]).astype(str),
        "heads": d["mean_heads"].map(lambda h: min((2, 4, 8), key=lambda v: abs(v - h))),
    }  # fmt: skip
    for c in GROUPED:
        for value, ppl in d["valid_ppl"].groupby(groups[c]):
            out.append({"choice": c, "kind": "group", "value": str(value), "n": int(len(ppl)),
                        "median_ppl": float(ppl.median()), "kendall_tau": np.nan, "spearman_rho": np.nan})  # fmt: skip
    return pd.DataFrame(out, columns=CHOICE_COLUMNS)
