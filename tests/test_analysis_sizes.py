"""analyze on every sweep size from 1 to 25 architectures of real records, and on missing or empty folders.

The records are the session's :func:`scored_nlp` fixture (25 NAS-Bench-NLP
architectures scored by ``score.py``'s task). For each size n the first n
records are analysed; every part of the report that needs more architectures
than it has must say so in ``summary.md`` and be left out, and nothing may
raise. The sizes that switch a part on are the thresholds of the analysis:
3 for a correlation, 10 for a bootstrap interval, 15 for 5-fold
cross-validation; the search simulation needs 40 (``search.simulate.min_archs``),
so it says it is skipped at every size here.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from tfnas import results
from tfnas.analysis.combine import min_cv_archs
from tfnas.analysis.stats import MIN_CI_N, MIN_N
from tfnas.paths import REPO_ROOT
from tfnas.tasks.analyze import analyze

FOLDS = 5


def test_thresholds_are_the_documented_ones():
    assert (MIN_N, MIN_CI_N, min_cv_archs(FOLDS)) == (3, 10, 15)


@pytest.mark.slow
def test_analyze_every_sweep_size_from_1_to_25(scored_nlp, tmp_path):
    files = list(results.iter_record_files(scored_nlp))
    assert len(files) == 25
    for n in range(1, 26):
        res_dir = tmp_path / f"n{n}"
        (res_dir / "nasbench_nlp").mkdir(parents=True)
        for p in files[:n]:
            shutil.copy(p, res_dir / "nasbench_nlp" / p.name)
        out = res_dir / "analysis"
        res = analyze({"results_dir": str(res_dir), "bootstrap": 30, "folds": FOLDS,
                       "plots": {"formats": ["png"], "dpi": 40}, "tensorboard": n in (1, 25)})
        (space,) = res.values()
        assert space["n_archs"] == n and space["out_dir"] == str(out)
        summary = (out / "summary.md").read_text()
        corr = pd.read_csv(out / "correlations.csv")
        assert len(corr) == 4 and (corr["n"] == n).all()  # every record is usable: real scores, benchmark truth

        # Correlations from 3 architectures, bootstrap intervals from 10.
        assert corr["kendall_tau"].notna().all() == (n >= MIN_N), n
        assert corr["kendall_ci_low"].notna().all() == (n >= MIN_CI_N), n
        assert ("No correlation (fewer than 3 usable architectures" in summary) == (n < MIN_N)
        assert ("Bootstrap CIs skipped: they need at least 10" in summary) == (MIN_N <= n < MIN_CI_N)

        # Top-k overlap at any size; the search simulation from search.simulate.min_archs (40).
        topk = pd.read_csv(out / "topk.csv")
        assert len(topk) == 4 and (topk["k"] == max(1, round(0.1 * n))).all()
        assert not (out / "search_budget.csv").exists()
        assert f"Skipped: the search simulation needs at least 40 architectures with usable test_loss" in summary
        assert f"{n} have it" in summary

        # Cross-validated combination from 3 architectures per fold.
        combos = pd.read_csv(out / "combinations.csv")
        cv = combos[combos["kind"].astype(str).str.startswith("cv_")]
        assert (len(cv) == 3) == (n >= min_cv_archs(FOLDS)), n
        if n < min_cv_archs(FOLDS):
            assert f"5-fold cross-validation needs at least 15 architectures with ground truth, {n} have it" in summary
        else:
            assert cv["n"].eq(n).all() and np.isfinite(cv["kendall_tau"]).all()
        assert (out / "tensorboard").is_dir() == (n in (1, 25))


def test_analyze_py_on_a_missing_or_empty_folder_prints_one_line_and_creates_nothing(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    empty, missing = tmp_path / "empty", tmp_path / "x" / "none"
    empty.mkdir()
    cases = [  # (arguments, the folder named, the message); out_dir defaults to <results_dir>/analysis
        ([f"results_dir={missing}"], missing, "does not exist"),
        ([f"paths.results_dir={missing}"], missing, "does not exist"),
        ([f"results_dir={missing}", f"out_dir={tmp_path / 'out'}"], missing, "does not exist"),
        ([f"results_dir=[{empty},{missing}]"], missing, "does not exist"),
        ([f"results_dir={empty}"], empty, "no result records (arch_*.json) below"),
    ]
    for args, folder, expected in cases:
        proc = subprocess.run([sys.executable, str(REPO_ROOT / "analyze.py"), *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 1, args
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("analyze.py: ") and expected in lines[0], proc.stderr
        assert str(folder) in lines[0] and "Traceback" not in proc.stdout + proc.stderr
        # Nothing left behind: no Hydra run folder (<results_dir>/analysis/hydra), no out_dir, no outputs/.
        assert [p.name for p in tmp_path.rglob("*")] == ["empty"], (args, list(tmp_path.rglob("*")))


def test_one_line_errors_exit_1_unless_hydra_full_error(monkeypatch, capsys):
    from tfnas.analysis.load import InputError
    from tfnas.hydra_support import one_line_errors

    @one_line_errors(InputError)
    def task(cfg):
        raise InputError(f"no result records below {cfg}")

    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        task("x/y")
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.endswith(": no result records below x/y\n") and err.count("\n") == 1
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(InputError, match="below x/y"):
        task("x/y")
    with pytest.raises(KeyError):  # other errors are not user mistakes: Hydra reports them as usual
        one_line_errors(InputError)(lambda cfg: {}[cfg])("k")


def test_analyze_py_without_arguments_reads_results_and_writes_results_analysis(scored_nlp, tmp_path):
    shutil.copytree(scored_nlp / "nasbench_nlp", tmp_path / "results" / "nasbench_nlp",
                    ignore=shutil.ignore_patterns("*.csv"))
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "analyze.py"), "bootstrap=20",
                           "plots.formats=[png]", "tensorboard=false"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = (tmp_path / "results" / "analysis" / "summary.md").read_text()
    assert "architectures in the main setting: 25" in summary
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]
    assert math.isfinite(pd.read_csv(tmp_path / "results" / "analysis" / "correlations.csv")["kendall_tau"].iloc[0])
