"""NAS-Bench-BERT search-space view on the real BERT_benchmark.json.

The expected values are computed here from the JSON file with plain json and
numpy, and checked against the paper's qualitative finding (docs/PAPER.md: 4 layers
average 71.7 vs 2 layers 65.8; H = 256 averages 70.4 vs 67.4).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tfnas.analysis import space


@pytest.fixture(scope="module")
def raw(data_dir):
    with open(data_dir / "nasbench_bert" / "BERT_benchmark.json") as f:
        entries = json.load(f)
    rows = []
    for e in entries:
        o = e["hparams"]["model_hparam_overrides"]
        rows.append((o["hidden_size"], len(o["nas_config"]["encoder_layers"]), e["scores"]["glue"],
                     [lay["num_operation_heads"] for lay in o["nas_config"]["encoder_layers"]]))
    return rows


@pytest.fixture(scope="module")
def result(data_dir):
    return space.analyze_space(data_dir / "nasbench_bert" / "BERT_benchmark.json")


def test_depth_and_hidden_size_dominate_glue(raw, result):
    ch = result["choices"]
    arch = ch[ch["level"] == "architecture"].set_index(["choice", "value"])
    assert arch.loc[("num_layers", "4"), "median"] > arch.loc[("num_layers", "2"), "median"]
    assert arch.loc[("hidden_size", "256"), "median"] > arch.loc[("hidden_size", "128"), "median"]
    # Paper's averages, to one decimal, recomputed from the raw file and from the table.
    glue = np.array([r[2] for r in raw])
    depth = np.array([r[1] for r in raw])
    hidden = np.array([r[0] for r in raw])
    for (choice, value), mask, paper in [
        (("num_layers", "4"), depth == 4, 71.7), (("num_layers", "2"), depth == 2, 65.8),
        (("hidden_size", "256"), hidden == 256, 70.4), (("hidden_size", "128"), hidden == 128, 67.4),
    ]:
        assert round(glue[mask].mean(), 1) == paper
        assert arch.loc[(choice, value), "mean"] == pytest.approx(glue[mask].mean())
        assert arch.loc[(choice, value), "median"] == pytest.approx(np.median(glue[mask]))
        assert arch.loc[(choice, value), "n"] == mask.sum()


def test_layer_choice_fraction_and_groups(raw, result):
    ch = result["choices"].set_index(["choice", "value", "group"])
    glue = np.array([r[2] for r in raw])
    frac2 = np.array([np.mean([h == 2 for h in r[3]]) for r in raw])
    assert ch.loc[("num_operation_heads", "2", "all layers"), "median"] == pytest.approx(np.median(glue[frac2 == 1]))
    assert ch.loc[("num_operation_heads", "2", "any layer"), "n"] == (frac2 > 0).sum()
    assert ch.loc[("num_operation_heads", "2", "layers"), "n"] == sum(sum(h == 2 for h in r[3]) for r in raw)
    from scipy import stats

    assert ch.loc[("num_operation_heads", "2", "all layers"), "tau_fraction"] == pytest.approx(
        stats.kendalltau(frac2, glue).statistic)


def test_suggested_subspace_beats_full_space(raw, result):
    sub = result["subspace"]
    assert sub.restrictions["num_layers"] == ["4"] and sub.restrictions["hidden_size"] == ["256"]
    glue = np.array([r[2] for r in raw])
    inside = np.array([r[0] == 256 and r[1] == 4 for r in raw])
    assert sub.n_bench == inside.sum() and sub.n_bench_full == len(raw)
    assert sub.median == pytest.approx(np.median(glue[inside]))
    assert sub.median_full == pytest.approx(np.median(glue))
    assert sub.median > sub.median_full > sub.median_rest
    # Sizes counted from search_space.json: a layer has 6 (type, parameter) × 2 heads × 2 FFN sizes × 2 FFN counts
    # = 48 options; H ∈ {128, 256}; depth ∈ {2, 4}.
    assert sub.full_size == 2 * (48 ** 2 + 48 ** 4)
    assert sub.size == 48 ** 4


def test_space_size_with_layer_restrictions(data_dir):
    from tfnas.spaces.nasbench_bert.definition import load_search_space

    s = load_search_space(data_dir / "nasbench_bert" / "search_space.json")
    # Only SA layers (2 parameters) with 4 heads: 2 × 1 × 2 × 2 = 8 options per layer.
    assert space.space_size(s, {"operation_type": ["SA"], "num_operation_heads": ["4"]}) == 2 * (8 ** 2 + 8 ** 4)
