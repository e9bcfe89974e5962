"""Tests of the analysis: loading, exclusions, statistics, search, combinations, ablation, end to end.

Record sets are built with ``tfnas.results.save`` from REAL ground truth: the
NAS-Bench-NLP WikiText-2 logs (read here with zipfile/json, independently of
tfnas.spaces) and NAS-Bench-BERT's scores (read with json). ``num_params`` is
the log's real parameter count; synthetic metrics have a known relationship
with the ground truth:

- ``synthetic_good`` = −test_loss + N(0, noise²) (positively related to quality);
- ``synthetic_wide`` = 10^(3·(−test_loss) + N(0, 1)) (same direction, spans
  many orders of magnitude: the scatter uses a log x axis).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from tfnas.analysis import ablation, combine, stats as astats
from tfnas.analysis.exclude import exclusion_counts, exclusion_rows
from tfnas.analysis.load import choose_setting, load_records, wide_table
from tfnas.analysis.stats import (
    CORRELATION_COLUMNS,
    bootstrap_indices,
    bootstrap_kendall,
    bootstrap_spearman,
    correlate,
    correlation_table,
)
from tfnas.paths import REPO_ROOT
from tfnas.results import Record, config_hash, save

WIKITEXT_ZIP = Path("nasbench_nlp") / "train_logs_wikitext-2.zip"


def read_wikitext_logs(data_dir: Path) -> list[dict]:
    """One dict per log: recipe_id, num_params, test_loss (last test_losses entry), status; sorted by id."""
    out = []
    with zipfile.ZipFile(data_dir / WIKITEXT_ZIP) as z:
        for name in z.namelist():
            if not name.endswith(".json"):
                continue
            d = json.loads(z.read(name))
            losses = d.get("test_losses") or []
            out.append({"recipe_id": int(d["recepie_id"]), "num_params": int(d["num_params"]),
                        "test_loss": float(losses[-1]) if losses else math.nan, "status": d["status"]})
    out.sort(key=lambda r: r["recipe_id"])
    return out


def make_nlp_records(
    results_dir: Path,
    data_dir: Path,
    n: int | None = None,
    n_errors: int = 3,
    n_nan: int = 4,
    n_inf: int = 1,
    noise: float = 0.1,
    seed: int = 0,
    settings_extra: dict | None = None,
) -> dict:
    """Write score records for the first ``n`` logs (all when None) under ``results_dir``.

    The first ``n_errors`` OK architectures get error records; the next
    ``n_nan`` get a NaN ``synthetic_good`` with a reason, the next ``n_inf``
    an infinite one. Architectures whose log is not OK keep their failed
    status in ``truth``.

    Returns:
        ``{"logs": [...], "errors": [arch...], "nan": [...], "inf": [...],
        "failed": [...]}`` (arch = position in the id-sorted log list).
    """
    logs = read_wikitext_logs(data_dir)
    if n is not None:
        # Keep every failed log inside the subset so the exclusions are exercised.
        failed = [i for i, r in enumerate(logs) if r["status"] != "OK"]
        ok = [i for i, r in enumerate(logs) if r["status"] == "OK"]
        keep = sorted(failed + ok[: max(0, n - len(failed))])
    else:
        keep = list(range(len(logs)))
    rng = np.random.default_rng(seed)
    ok_archs = [i for i in keep if logs[i]["status"] == "OK"]
    errors = ok_archs[:n_errors]
    nan = ok_archs[n_errors:n_errors + n_nan]
    inf = ok_archs[n_errors + n_nan:n_errors + n_nan + n_inf]
    for i in keep:
        r = logs[i]
        truth = {"test_loss": r["test_loss"], "test_ppl": math.exp(r["test_loss"]) if math.isfinite(r["test_loss"]) else math.nan,
                 "status": r["status"]}
        # Failed trainings have no loss: give them a typical (unknown) quality instead.
        q = -r["test_loss"] if math.isfinite(r["test_loss"]) else -5.3 + 0.2 * rng.normal()
        settings = {"space": "nasbench_nlp", "arch": i, "seed": 0, "batch_index": 0, **(settings_extra or {})}
        scores = {"num_params": float(r["num_params"]),
                  "synthetic_good": float(q + noise * rng.normal()),
                  "synthetic_wide": float(10 ** (3 * q + rng.normal()))}
        reasons = {}
        if i in nan:
            scores["synthetic_good"] = math.nan
            reasons["synthetic_good"] = "hidden state is constant: correlation undefined"
        if i in inf:
            scores["synthetic_good"] = math.inf
            reasons["synthetic_good"] = "overflow"
        status, error = ("error", "RuntimeError: out of memory") if i in errors else ("ok", None)
        rec = Record(space="nasbench_nlp", arch=i, benchmark_id=str(r["recipe_id"]), seed=0,
                     config_hash=config_hash(settings), status=status, error=error,
                     scores={} if status == "error" else scores, reasons=reasons, truth=truth,
                     seconds=1.0, source="score", settings=settings)
        save(rec, results_dir)
    failed = [i for i in keep if logs[i]["status"] != "OK"]
    return {"logs": logs, "keep": keep, "errors": errors, "nan": nan, "inf": inf, "failed": failed}


def read_bert_benchmark(data_dir: Path) -> list[dict]:
    """The NAS-Bench-BERT entries: id, GLUE scores (dict), hidden size, number of layers."""
    with open(data_dir / "nasbench_bert" / "BERT_benchmark.json") as f:
        raw = json.load(f)
    out = []
    for e in raw:
        o = e["hparams"]["model_hparam_overrides"]
        out.append({"id": int(e["id"]), "scores": dict(e["scores"]), "hidden_size": int(o["hidden_size"]),
                    "num_layers": len(o["nas_config"]["encoder_layers"])})
    return out


def make_bert_records(results_dir: Path, data_dir: Path, n: int = 120, seed: int = 0,
                      repeats: dict[str, list[int]] | None = None, n_repeat_archs: int = 0) -> list[dict]:
    """Score records for the first ``n`` NAS-Bench-BERT architectures, truth = the benchmark's scores.

    Metrics: ``num_params_proxy`` = hidden_size² · layers (an exact function of
    the two choices that drive GLUE), ``synthetic_glue`` = glue + N(0, 2²),
    ``noise`` = N(0, 1). With ``repeats={"seed": [...], "batch_index": [...]}``
    the first ``n_repeat_archs`` architectures are also scored under those
    seeds (batch 0) and minibatches (seed 0): every repeat adds a small
    perturbation (sd 0.3) to ``synthetic_glue`` and a fresh ``noise`` draw.
    """
    bench = read_bert_benchmark(data_dir)[:n]
    rng = np.random.default_rng(seed)
    base = {}
    for i, b in enumerate(bench):
        base[i] = {"num_params_proxy": float(b["hidden_size"] ** 2 * b["num_layers"]),
                   "synthetic_glue": float(b["scores"]["glue"] + 2.0 * rng.normal())}
    settings_list = [(0, 0)]
    for s in (repeats or {}).get("seed", []):
        settings_list.append((s, 0))
    for bi in (repeats or {}).get("batch_index", []):
        settings_list.append((0, bi))
    for seed_, bi in dict.fromkeys(settings_list):
        for i, b in enumerate(bench):
            if (seed_, bi) != (0, 0) and i >= n_repeat_archs:
                continue
            scores = dict(base[i])
            if (seed_, bi) != (0, 0):
                scores["synthetic_glue"] += 0.3 * rng.normal()
            scores["noise"] = float(rng.normal())
            settings = {"space": "nasbench_bert", "arch": i, "seed": seed_, "batch_index": bi}
            save(Record(space="nasbench_bert", arch=i, benchmark_id=str(b["id"]), seed=seed_,
                        config_hash=config_hash(settings), scores=scores, truth=dict(b["scores"]),
                        settings=settings), results_dir)
    return bench


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def nlp_set(tmp_path_factory, data_dir):
    """120 real WikiText-2 architectures (all 4 failed ones included), with errors, NaN and inf scores."""
    root = tmp_path_factory.mktemp("nlp")
    info = make_nlp_records(root / "results", data_dir, n=120)
    # A file named like a record that is not one: skipped and counted.
    (root / "results" / "nasbench_nlp" / "arch_999999_notarecord.json").write_text(json.dumps({"hello": 1}))
    info["dir"] = root / "results"
    return info


def _usable_truth(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Rows usable for (metric, test_loss), selected here independently of tfnas.analysis.exclude."""
    ok = (df["record_status"] == "ok") & (df["status"] == "OK") & np.isfinite(df["test_loss"]) & np.isfinite(df[metric])
    return df[ok]


# ---------------------------------------------------------------- loading and exclusions

def test_load_counts_records_and_skips_non_records(nlp_set):
    rs = load_records(nlp_set["dir"])
    assert rs.n_files == len(nlp_set["keep"]) + 1
    assert rs.n_records == len(nlp_set["keep"])
    assert len(rs.skipped) == 1 and "arch_999999_notarecord.json" in rs.skipped[0][0]
    assert rs.spaces() == ["nasbench_nlp"]
    df = wide_table(rs.entries)
    assert len(df) == len(nlp_set["keep"])
    # Truth comes through unchanged: the real last test loss and recipe id of each log.
    logs = nlp_set["logs"]
    for row in df.sample(10, random_state=0).itertuples():
        assert row.benchmark_id == str(logs[row.arch]["recipe_id"])
        if logs[row.arch]["status"] == "OK":
            assert row.test_loss == pytest.approx(logs[row.arch]["test_loss"], rel=1e-12)
            assert row.num_params == logs[row.arch]["num_params"] or row.record_status == "error"


def test_exclusions_are_counted_by_first_reason(nlp_set):
    rs = load_records(nlp_set["dir"])
    metrics = ["num_params", "synthetic_good", "synthetic_wide"]
    counts = exclusion_counts(rs.entries, metrics, "test_loss").set_index("metric")
    n = len(nlp_set["keep"])
    n_err, n_failed = len(nlp_set["errors"]), len(nlp_set["failed"])
    assert n_failed == 4  # the benchmark's four "loss is nan!" logs
    for m in metrics:
        assert counts.loc[m, "archs"] == n
        assert counts.loc[m, "record_error"] == n_err
        assert counts.loc[m, "failed_training"] == n_failed
    assert counts.loc["synthetic_good", "nan_score"] == len(nlp_set["nan"])
    assert counts.loc["synthetic_good", "inf_score"] == len(nlp_set["inf"])
    assert counts.loc["num_params", "nan_score"] == 0
    assert counts.loc["synthetic_good", "used"] == n - n_err - n_failed - len(nlp_set["nan"]) - len(nlp_set["inf"])
    kinds = [c for c in counts.columns if c not in ("archs", "used")]
    assert (counts["used"] + counts[kinds].sum(axis=1) == counts["archs"]).all()

    rows = exclusion_rows(rs.entries, metrics, ["test_loss"])
    nan_rows = rows[(rows["kind"] == "nan_score")]
    assert sorted(nan_rows["arch"]) == sorted(nlp_set["nan"])
    assert (nan_rows["reason"] == "hidden state is constant: correlation undefined").all()
    failed = rows[rows["kind"] == "failed_training"]
    assert sorted(failed["arch"]) == sorted(nlp_set["failed"])
    assert failed["reason"].str.contains("loss is nan!").all()
    assert sorted(rows.loc[rows["kind"] == "record_error", "arch"]) == sorted(nlp_set["errors"])


def test_empty_or_missing_results_dir_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no result records"):
        load_records(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_records(tmp_path / "nope")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "arch_1.json").write_text("not json")
    with pytest.raises(ValueError, match="none of the 1 arch_"):
        load_records(tmp_path / "junk")


def _rec(arch, seed=0, batch_index=0, source="score", scores=None, truth=None, status="ok", **settings):
    s = {"space": "nasbench_nlp", "arch": arch, "seed": seed, "batch_index": batch_index, "source": source, **settings}
    return Record(space="nasbench_nlp", arch=arch, benchmark_id=str(1000 + arch), seed=seed, config_hash=config_hash(s),
                  status=status, scores=scores or {}, truth=truth or {}, source=source, settings=s)


def test_merge_keeps_the_benchmark_truth_and_settings_stay_apart(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    save(_rec(0, scores={"m": 1.0}, truth={"test_loss": 5.0, "status": "OK"}), a)
    # The train record in another folder: its truth is not used beside the benchmark's, its score of m agrees.
    save(_rec(0, source="train", scores={"m": 1.0}, truth={"test_loss": 4.2, "status": "OK", "epochs": 3}), b)
    save(_rec(0, seed=1, scores={"m": 2.0}, truth={"test_loss": 5.0, "status": "OK"}), a)
    save(_rec(1, scores={"m": 3.0}, truth={"test_loss": 4.0, "status": "OK"}), a)
    save(_rec(1, scores={"m": 3.5}, truth={"test_loss": 4.0, "status": "OK"}, paper_compat=True), b)
    rs = load_records([a, b])
    by = {(e.arch, e.seed): e for e in rs.entries}
    assert len(rs.entries) == 3
    assert by[(0, 0)].truth == {"test_loss": 5.0, "status": "OK"}
    assert len(rs.truth_conflicts) == 1 and "arch 0 (seed 0, batch 0): test_loss 5.0 kept, 4.2 not used" in \
        rs.truth_conflicts[0]
    assert sorted(by[(0, 0)].sources) == ["score", "train"]
    assert by[(0, 1)].scores["m"] == 2.0  # another seed: an ablation repeat, not merged
    assert len(rs.conflicts) == 1 and "arch 1" in rs.conflicts[0]
    # `where` selects one of the conflicting sweeps.
    only = load_records([a, b], where={"paper_compat": True})
    assert [e.scores["m"] for e in only.entries] == [3.5]
    setting, note = choose_setting(rs.entries)
    assert setting == (0, 0) and "default" in note
    no_default = [e for e in rs.entries if e.seed == 1]
    assert choose_setting(no_default)[0] == (1, 0)


def test_quick_train_truth_does_not_replace_the_benchmarks(tmp_path, data_dir, caplog):
    """score.py records of three NAS-Bench-NLP architectures (the benchmark's truth) in one folder, a
    ``train.py experiment=quick`` record of one of them in another: the benchmark's truth stays, the quick
    training's is named in one warning line and analysed alone with ``+where.source=train``."""
    import logging

    from tfnas.spaces.nasbench_nlp.benchmark import read_benchmark

    archs = read_benchmark(data_dir / WIKITEXT_ZIP)[:3]
    settings = {"space": "nasbench_nlp", "space_cfg": {"benchmark": WIKITEXT_ZIP.name, "generate": 0},
                "seed": 0, "batch_index": 0, "data": {"name": "ptb", "batch_size": 64, "bptt": 70},
                "metrics": ["num_params"], "paper_compat": False}
    scored, trained = tmp_path / "results", tmp_path / "quick"
    for i, arch in enumerate(archs):
        s = dict(settings, arch=i)
        save(Record(space="nasbench_nlp", arch=i, benchmark_id=arch.benchmark_id, seed=0, config_hash=config_hash(s),
                    scores={"num_params": 1e6 + i}, truth=dict(arch.truth), settings=s), scored)
    s = dict(settings, arch=1, task="train", trainer={"max_epochs": 1, "limit_train_batches": 1100})
    quick = {"test_loss": 5.70, "test_ppl": math.exp(5.70), "val_loss": 5.78, "val_ppl": math.exp(5.78),
             "train_loss": 5.91, "status": "OK", "epochs": 1}
    path = save(Record(space="nasbench_nlp", arch=1, benchmark_id=archs[1].benchmark_id, seed=0,
                       config_hash=config_hash(s), scores={"num_params": 1e6 + 1}, truth=quick, source="train",
                       settings=s, extra={"benchmark_truth": dict(archs[1].truth)}), trained)
    assert archs[1].truth["test_loss"] != quick["test_loss"]

    with caplog.at_level(logging.WARNING, logger="tfnas.analysis.load"):
        rs = load_records([scored, trained])
    by = {e.arch: e for e in rs.entries}
    assert by[1].sources == ["score", "train"]
    assert by[1].truth == archs[1].truth                      # the benchmark's, not one key of the quick training
    df = wide_table(rs.entries)
    assert list(df["test_loss"]) == pytest.approx([a.truth["test_loss"] for a in archs], nan_ok=True)
    assert "epochs" not in df.columns
    (line,) = rs.truth_conflicts
    assert f"test_loss {archs[1].truth['test_loss']!r} kept, 5.7 not used" in line and str(path) in line
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "\n" not in warning and "1 train record(s) (nasbench_nlp arch 1)" in warning
    assert "+where.source=train" in warning

    # The quick training's truth on its own.
    alone = load_records([scored, trained], where={"source": "train"})
    assert [(e.arch, e.truth["test_loss"], e.truth["epochs"]) for e in alone.entries] == [(1, 5.70, 1)]
    assert alone.truth_conflicts == []
    # Without benchmark truth (a score record with none), the training's is the truth.
    bare = tmp_path / "bare"
    s = dict(settings, arch=1)
    save(Record(space="nasbench_nlp", arch=1, benchmark_id=None, seed=0, config_hash=config_hash(s),
                scores={"num_params": 1e6 + 1}, settings=s), bare)
    joined = load_records([bare, trained])
    assert [e.truth for e in joined.entries] == [quick] and joined.truth_conflicts == []


def test_benchmark_and_generated_records_are_not_joined(tmp_path):
    bench = {"space_cfg": {"benchmark": "train_logs_wikitext-2.zip", "generate": 0}}
    gen = {"space_cfg": {"benchmark": None, "generate": 5, "generator_seed": 0, "num_hidden": [1, 2, 3]}}
    save(_rec(0, scores={"m": 1.0}, truth={"test_loss": 5.0, "status": "OK"}, **bench), tmp_path)
    save(_rec(0, scores={"m": -7.0}, **gen), tmp_path)
    with pytest.raises(ValueError, match=r"2 architecture populations \(generated cells .*: 1 record\(s\); train_logs_wikitext-2\.zip: 1 record"):
        load_records(tmp_path)
    only = load_records(tmp_path, where={"space_cfg.benchmark": None})
    assert [e.scores["m"] for e in only.entries] == [-7.0]
    nested = load_records(tmp_path, where={"space_cfg": {"benchmark": "train_logs_wikitext-2.zip"}})  # +where.a.b=v
    assert [e.scores["m"] for e in nested.entries] == [1.0]


# ---------------------------------------------------------------- statistics

def test_correlation_table_matches_scipy_and_sign_convention(nlp_set):
    df = wide_table(load_records(nlp_set["dir"]).entries)
    corr = correlation_table(df, ["num_params", "synthetic_good"], ["test_loss"], n_boot=50)
    assert list(corr.columns) == CORRELATION_COLUMNS
    for m in ("num_params", "synthetic_good"):
        sub = _usable_truth(df, m)
        row = corr[corr["metric"] == m].iloc[0]
        assert row["n"] == len(sub)
        q = -sub["test_loss"].to_numpy()
        assert row["kendall_tau"] == pytest.approx(stats.kendalltau(sub[m], q).statistic, abs=1e-12)
        assert row["spearman_rho"] == pytest.approx(stats.spearmanr(sub[m], q).statistic, abs=1e-12)
        assert row["pearson_r"] == pytest.approx(stats.pearsonr(sub[m], q).statistic, abs=1e-12)
        assert row["kendall_ci_low"] <= row["kendall_tau"] <= row["kendall_ci_high"]
    # synthetic_good = −loss + noise: positive τ with the quality −test_loss.
    assert corr.set_index("metric").loc["synthetic_good", "kendall_tau"] > 0.5


def test_bootstrap_resamples_equal_scipy_on_each_resample():
    rng = np.random.default_rng(1)
    x = np.round(rng.normal(size=60), 1)  # ties, as resampling creates
    y = x + rng.normal(size=60)
    idx = bootstrap_indices(60, 5, seed=3)
    k = bootstrap_kendall(x, y, idx)
    s = bootstrap_spearman(x, y, idx)
    for b, i in enumerate(idx):
        assert k[b] == pytest.approx(stats.kendalltau(x[i], y[i]).statistic, abs=1e-12)
        assert s[b] == pytest.approx(stats.spearmanr(x[i], y[i]).statistic, abs=1e-12)
    assert (bootstrap_indices(60, 5, seed=3) == idx).all()


def _bivariate(n, rho, seed):
    rng = np.random.default_rng(seed)
    z = rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], size=n)
    return z[:, 0], z[:, 1]


def test_bootstrap_ci_covers_population_values_and_shrinks_with_n():
    rho = 0.6
    tau_pop = 2 / math.pi * math.asin(rho)          # Greiner's relation for the bivariate normal
    rho_s_pop = 6 / math.pi * math.asin(rho / 2)    # Pearson (1907) for Spearman's ρ
    x, y = _bivariate(400, rho, seed=0)
    r = correlate(x, y, n_boot=400, seed=0)
    assert r["kendall_ci_low"] < tau_pop < r["kendall_ci_high"]
    assert r["spearman_ci_low"] < rho_s_pop < r["spearman_ci_high"]
    w400 = r["kendall_ci_high"] - r["kendall_ci_low"]
    # Asymptotic sd of τ-hat here is about 0.028, so a 95% interval is about 0.11 wide.
    assert 0.05 < w400 < 0.2
    assert 0.05 < r["spearman_ci_high"] - r["spearman_ci_low"] < 0.25
    x, y = _bivariate(1600, rho, seed=1)
    r2 = correlate(x, y, n_boot=200, seed=0)
    w1600 = r2["kendall_ci_high"] - r2["kendall_ci_low"]
    assert 0.35 < w1600 / w400 < 0.7  # ~1/2 for 4x the data


def test_bootstrap_ci_coverage_over_replicates():
    tau_pop = 2 / math.pi * math.asin(0.5)
    hits = 0
    reps = 40
    for rep in range(reps):
        x, y = _bivariate(120, 0.5, seed=100 + rep)
        r = correlate(x, y, n_boot=200, seed=rep)
        hits += r["kendall_ci_low"] < tau_pop < r["kendall_ci_high"]
    # Nominal 95%: fewer than 33 of 40 (82%) would be far outside binomial noise.
    assert hits >= 33


def test_correlate_degenerate_inputs_do_not_crash():
    r = correlate(np.array([1.0, 2.0]), np.array([2.0, 1.0]), n_boot=10)
    assert r["n"] == 2 and math.isnan(r["kendall_tau"]) and math.isnan(r["kendall_ci_low"])
    r = correlate(np.ones(10), np.arange(10.0), n_boot=10)
    assert r["n"] == 10 and math.isnan(r["kendall_tau"])
    with pytest.raises(ValueError, match="finite"):
        correlate(np.array([1.0, np.nan, 3.0]), np.arange(3.0))


# ---------------------------------------------------------------- top-k overlap

def test_top_k_overlap():
    q = np.arange(100.0)
    assert astats.top_k_overlap(q, q, 0.1) == {"n": 100, "k": 10, "overlap": 10, "expected_random": 1.0}
    assert astats.top_k_overlap(-q, q, 0.1)["overlap"] == 0
    assert astats.top_k_overlap(np.r_[q[:95], -q[95:]], q, 0.1)["overlap"] == 5


# ---------------------------------------------------------------- combinations

def test_cv_predictions_never_read_the_held_out_ground_truth():
    rng = np.random.default_rng(0)
    n, m = 150, 6
    x = rng.normal(size=(n, m))
    q = x[:, 0] + 0.5 * x[:, 1] + rng.normal(size=n)
    r = stats.rankdata(x, axis=0) / n
    base = combine.cv_predictions(r, q, folds=5, seed=3)
    fold = base["fold"]
    for f in range(5):
        q2 = q.copy()
        q2[fold == f] = rng.normal(size=(fold == f).sum()) * 100  # scramble only the held-out truth
        other = combine.cv_predictions(r, q2, folds=5, seed=3)
        for k in ("cv_best_single", "cv_rank_average", "cv_ridge"):
            assert np.array_equal(other[k][fold == f], base[k][fold == f])


def test_learned_combination_on_noise_is_not_inflated():
    n, m = 200, 30
    metrics = [f"noise_{j}" for j in range(m)]
    null_sd = math.sqrt(2 * (2 * n + 5) / (9 * n * (n - 1)))  # sd of τ-hat under independence (Kendall 1938)
    cv_taus, fit_taus = [], []
    for rep in range(4):
        rng = np.random.default_rng(rep)
        df = pd.DataFrame(rng.normal(size=(n, m)), columns=metrics)
        df.insert(0, "arch", np.arange(n))
        df.insert(1, "benchmark_id", None)
        df.insert(2, "record_status", "ok")
        df["glue"] = rng.normal(size=n)
        table, verdict = combine.cross_validated(df, metrics, "glue", folds=5, n_boot=50, seed=rep)
        assert verdict["n"] == n and len(verdict["metrics"]) == m
        cv_taus.append(table.set_index("kind").loc["cv_ridge", "kendall_tau"])
        # The same kind of model fitted and scored on all architectures looks good: the inflation CV avoids.
        z = stats.rankdata(df[metrics].to_numpy(), axis=0) / n
        z = np.column_stack([z - z.mean(0), np.ones(n)])
        fit = z @ np.linalg.lstsq(z, stats.rankdata(df["glue"]), rcond=None)[0]
        fit_taus.append(stats.kendalltau(fit, df["glue"]).statistic)
    assert max(abs(t) for t in cv_taus) < 3 * null_sd
    assert abs(np.mean(cv_taus)) < 2 * null_sd
    assert min(fit_taus) > 0.2


def test_learned_combination_is_set_against_references_on_its_architectures():
    rng = np.random.default_rng(5)
    n = 120
    df = pd.DataFrame({"arch": np.arange(n), "benchmark_id": None, "record_status": "ok"})
    truth = rng.normal(size=n)
    df["good"] = truth + rng.normal(size=n)
    df["reversed"] = -(truth + 2 * rng.normal(size=n))  # anti-correlated: oriented before comparing
    df["sparse"] = np.where(np.arange(n) < 100, rng.normal(size=n), np.nan)  # misses some architectures
    df["glue"] = truth
    table, verdict = combine.cross_validated(
        df, ["good", "reversed"], "glue", n_boot=200, references=["reversed", "sparse", "absent"])
    refs = table[table["kind"] == "reference"].set_index("metrics")
    assert list(refs.index) == ["reversed"]  # "sparse" does not cover the same rows, "absent" is no column
    expected = stats.kendalltau(-df["reversed"], truth).statistic
    assert refs.loc["reversed", "kendall_tau"] == pytest.approx(expected, abs=1e-12)
    d = verdict["reference_diff"]["reversed"]
    ridge_tau = table.set_index("kind").loc["cv_ridge", "kendall_tau"]
    assert d["diff"] == pytest.approx(ridge_tau - expected, abs=1e-12)
    assert d["ci_low"] < d["diff"] < d["ci_high"]
    assert "Against reversed alone" in verdict["text"]


def test_rank_combinations_use_oriented_normalised_ranks_and_keep_undefined_scores(nlp_set):
    df = wide_table(load_records(nlp_set["dir"]).entries)
    corr = correlation_table(df, ["num_params", "synthetic_good"], ["test_loss"], n_boot=20)
    rows = combine.rank_combinations(df, [["synthetic_good", "num_params"]], "test_loss", corr, n_boot=20)
    sub = df[(df["record_status"] == "ok") & (df["status"] == "OK") & np.isfinite(df["test_loss"])]
    good = sub["synthetic_good"].to_numpy()
    defined = np.isfinite(good)
    assert (~defined).sum() == 5  # the NaN and inf scores stay in the combination
    r_good = np.empty(len(sub))
    r_good[defined] = stats.rankdata(good[defined]) / defined.sum()
    r_good[~defined] = np.median(r_good[defined])
    sign = np.sign(corr.set_index("metric").loc["num_params", "kendall_tau"])
    ra = (r_good + stats.rankdata(sign * sub["num_params"]) / len(sub)) / 2
    expected = stats.kendalltau(ra, -sub["test_loss"]).statistic
    got = rows.set_index("kind").loc["rank_average", "kendall_tau"]
    assert got == pytest.approx(expected, abs=1e-12)
    assert rows.set_index("kind").loc["rank_average", "n"] == len(sub)


# ---------------------------------------------------------------- ablation

def test_ablation_spread_and_per_repeat_tau(tmp_path, data_dir):
    bench = make_bert_records(tmp_path / "r", data_dir, n=40, repeats={"seed": [1, 2], "batch_index": [1, 2, 3]},
                              n_repeat_archs=12)
    rs = load_records(tmp_path / "r")
    setting, _ = choose_setting(rs.entries)
    assert setting == (0, 0)
    res = ablation.ablation(rs.entries, ["synthetic_glue", "num_params_proxy", "noise"], "glue", setting)
    assert res.axes == ["batch", "seed"]
    sp = res.spread.set_index(["metric", "axis"])
    # Independent computation for synthetic_glue across minibatches (seed 0, batch 0..3, archs 0..11).
    vals = {}
    for e in rs.entries:
        if e.seed == 0 and e.arch < 12:
            vals.setdefault(e.arch, []).append(e.scores["synthetic_glue"])
    arr = np.array([vals[a] for a in sorted(vals)])
    assert arr.shape == (12, 4)
    within = math.sqrt(arr.var(axis=1, ddof=1).mean())
    between = arr.mean(axis=1).std(ddof=1)
    row = sp.loc[("synthetic_glue", "batch")]
    assert row["within_sd"] == pytest.approx(within) and row["between_sd"] == pytest.approx(between)
    assert row["ratio"] < 0.3 < sp.loc[("noise", "batch"), "ratio"]
    assert sp.loc[("num_params_proxy", "seed"), "within_sd"] == 0.0
    t = res.repeat_tau
    one = t[(t["metric"] == "synthetic_glue") & (t["axis"] == "seed") & (t["repeat"] == 2)].iloc[0]
    e2 = sorted((e for e in rs.entries if e.seed == 2), key=lambda e: e.arch)
    expected = stats.kendalltau([e.scores["synthetic_glue"] for e in e2], [bench[e.arch]["scores"]["glue"] for e in e2])
    assert one["n"] == 12 and one["kendall_tau"] == pytest.approx(expected.statistic)
    # Without repeats there is no ablation view.
    main = [e for e in rs.entries if e.setting == (0, 0)]
    assert ablation.ablation(main, ["noise"], "glue", (0, 0)).empty


# ---------------------------------------------------------------- end to end

def _compose(overrides):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO_ROOT / "conf"), version_base="1.3"):
        return compose(config_name="analyze", overrides=overrides)


def test_end_to_end_nlp_via_compose(nlp_set, tmp_path, capsys):
    from tfnas.tasks.analyze import analyze

    out = tmp_path / "out"
    cfg = _compose([f"results_dir={nlp_set['dir']}", f"out_dir={out}", "bootstrap=50", "search=top_metric",
                    "search.metric=synthetic_good", "search.batch=5", "search.simulate.repeats=20"])
    res = analyze(cfg)["nasbench_nlp"]
    for name in ("scores.csv", "correlations.csv", "exclusions.csv", "search_budget.csv", "search_targets.csv",
                 "topk.csv", "combinations.csv", "summary.md", "proposal.md", "proposal.json", "scatter.png",
                 "scatter.pdf", "tau_bars.png", "tau_bars.pdf", "search.png", "search.pdf", "combinations.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert not (out / "space_choices.csv").exists()  # no search-space view for NAS-Bench-NLP records

    # correlations.csv equals scipy.stats recomputed from scores.csv.
    scores = pd.read_csv(out / "scores.csv")
    corr = pd.read_csv(out / "correlations.csv")
    assert list(corr.columns) == CORRELATION_COLUMNS
    assert set(corr["metric"]) == {"num_params", "synthetic_good", "synthetic_wide"}
    for row in corr.itertuples():
        sub = _usable_truth(scores, row.metric)
        q = -sub["test_loss"].to_numpy()
        assert row.n == len(sub)
        assert row.kendall_tau == pytest.approx(stats.kendalltau(sub[row.metric], q).statistic, abs=1e-12)
        assert row.kendall_p == pytest.approx(stats.kendalltau(sub[row.metric], q).pvalue, rel=1e-9)
        assert row.spearman_rho == pytest.approx(stats.spearmanr(sub[row.metric], q).statistic, abs=1e-12)
        assert row.pearson_r == pytest.approx(stats.pearsonr(sub[row.metric], q).statistic, abs=1e-9)
    # Sorted by |τ|, excluded archs counted in the summary, console lists metrics with CIs.
    assert corr["kendall_tau"].abs().is_monotonic_decreasing
    summary = (out / "summary.md").read_text()
    assert "| synthetic_good | 120 |" in summary and "failed_training (test_loss): 4" in summary
    printed = capsys.readouterr().out
    assert "synthetic_good" in printed and "τ=+" in printed and "python train.py -m 'arch=" in printed
    finite = scores[(scores["record_status"] == "ok") & np.isfinite(scores["synthetic_good"])]  # inf is not a pick
    ranked = finite.sort_values("synthetic_good", ascending=False, kind="stable")
    assert res["proposal"]["batch"] == ranked["arch"].head(5).tolist() and res["proposal"]["spent"] == 0
    # the simulation runs on the 113 architectures with usable truth, NaN / inf scores included
    curves = pd.read_csv(out / "search_budget.csv")
    assert curves["n_pool"].iloc[0] == round(0.5 * 113) and curves["budget"].max() == int(0.25 * 56)
    assert {"random", "oracle", "top:synthetic_good", "learned", "ego"} <= set(curves["strategy"])
    assert "synthetic_good for 5 of 113" in summary and "random search needs a median of" in summary


def test_end_to_end_bert_with_ablation_and_space_view(tmp_path, data_dir):
    from tfnas.tasks.analyze import analyze

    make_bert_records(tmp_path / "r", data_dir, n=60, repeats={"seed": [1, 2], "batch_index": [1, 2]}, n_repeat_archs=8)
    # One metric defined for only two architectures: reported, not crashed.
    save(Record(space="nasbench_bert", arch=0, benchmark_id="0", seed=0, config_hash="extra",
                scores={"rare": 1.0}, settings={"seed": 0, "batch_index": 0}), tmp_path / "r")
    save(Record(space="nasbench_bert", arch=1, benchmark_id="1", seed=0, config_hash="extra",
                scores={"rare": 2.0}, settings={"seed": 0, "batch_index": 0}), tmp_path / "r")
    out = tmp_path / "out"
    cfg = _compose([f"results_dir={tmp_path / 'r'}", f"out_dir={out}", "bootstrap=30", "search.simulate.repeats=10",
                    "plots.formats=[png]", f"data_dir={data_dir}"])
    res = analyze(cfg)["nasbench_bert"]
    assert res["targets"][0] == "glue" and len(res["targets"]) == 9
    for name in ("tau_heatmap.png", "ablation.csv", "ablation_tau.csv", "ablation_batch.png", "ablation_seed.png",
                 "space_choices.csv", "space_cross.csv", "space_boxes.png", "space_subspace.png"):
        assert (out / name).is_file(), name
    corr = pd.read_csv(out / "correlations.csv")
    rare = corr[(corr["metric"] == "rare") & (corr["target"] == "glue")].iloc[0]
    assert rare["n"] == 2 and math.isnan(rare["kendall_tau"])
    assert "rare (n=2)" in (out / "summary.md").read_text()
    # The truth of the first architecture is the benchmark's, merged from the score and the extra record.
    scores = pd.read_csv(out / "scores.csv")
    bench = read_bert_benchmark(data_dir)
    assert scores.loc[scores["arch"] == 0, "glue"].item() == pytest.approx(bench[0]["scores"]["glue"])
    assert res["subspace"]["median"] > res["subspace"]["median_full"]


def test_analyze_py_runs_as_a_script(nlp_set, tmp_path, data_dir):
    out = tmp_path / "out"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = {**os.environ, "TFNAS_DATA_DIR": str(data_dir)}
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "analyze.py"), f"results_dir={nlp_set['dir']}", f"out_dir={out}",
         "bootstrap=20", "search.simulate.enabled=false", "plots.formats=[png]", "tensorboard=false",
         "learned.enabled=false"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "correlations.csv").is_file() and (out / "summary.md").is_file()
    assert "top metrics by |τ|" in proc.stdout
    # Hydra's own run folder lives under out_dir, not in the working directory.
    assert (out / "hydra" / ".hydra" / "config.yaml").is_file()
    assert list(cwd.iterdir()) == []

    bad = subprocess.run([sys.executable, str(REPO_ROOT / "analyze.py"), f"results_dir={tmp_path / 'missing'}",
                          f"out_dir={tmp_path / 'o2'}"], cwd=cwd, env=env, capture_output=True, text=True,
                         timeout=300)
    assert bad.returncode != 0 and "does not exist" in bad.stderr
    assert not (tmp_path / "o2").exists() and not (tmp_path / "missing").exists()


def test_resample_ranks_equal_rankdata():
    from tfnas.analysis.stats import resample_counts, resample_ranks

    rng = np.random.default_rng(4)
    v = rng.integers(0, 15, size=40).astype(float)  # many ties
    idx = rng.integers(0, 40, size=(6, 40))
    c = resample_counts(idx, 40)
    assert (c.sum(axis=1) == 40).all()
    r = resample_ranks(v, c)
    for b, i in enumerate(idx):
        assert np.allclose(r[b, i], stats.rankdata(v[i]))


def test_scatter_axis_scale_rule():
    from tfnas.analysis.plots import x_scale

    rng = np.random.default_rng(0)
    assert x_scale(rng.normal(size=500))[0] == "linear"                # noise around zero
    assert x_scale(1.5e7 + 1e7 * rng.random(500))[0] == "linear"       # num_params-like
    assert x_scale(10 ** rng.uniform(-24, -13, 500))[0] == "log"       # spans 11 decades
    assert x_scale(-(10 ** rng.uniform(1, 8, 500)))[0] == "symlog"     # negative, many decades
    assert x_scale(rng.choice([-1, 1], 500) * 10 ** rng.uniform(-2, 4, 500))[0] == "symlog"  # both signs, decades


def test_summary_compares_with_published_tau():
    from tfnas.analysis.report import correlation_markdown

    corr = pd.DataFrame([{"metric": "hidden_covariance_l1", "target": "test_loss", "n": 341, "kendall_tau": 0.26,
                          "kendall_p": 1e-10, "kendall_ci_low": 0.2, "kendall_ci_high": 0.3, "spearman_rho": 0.38,
                          "spearman_p": 1e-11, "spearman_ci_low": 0.3, "spearman_ci_high": 0.45,
                          "pearson_r": 0.3, "pearson_p": 1e-8}])
    md = correlation_markdown(corr, "nasbench_nlp", "test_loss", 0.95)
    row = md.splitlines()[2]
    # docs/PAPER.md: hidden_covariance_l1 |τ| 0.372, |ρ| 0.524, "higher is better"; our |τ| − paper = −0.112.
    assert "| 0.372 | 0.524 | + | -0.112 |" in row and "+0.260 [+0.200, +0.300]" in row
