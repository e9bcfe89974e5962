"""analyze.py's option checks: a wrong value fails before any work, in one line, leaving the analysis folder as it was.

Ranges and choices (``ci``, ``top_fraction``, ``search.*``, ``plots.formats``, ...) are the schema's
(:mod:`tfnas.schema`, checked on the command line and in :func:`tfnas.tasks.analyze.check_inputs`);
metric names (``combine``, ``search.metric``, ``search.combination``, ``learned.metrics``) are checked
once the records are read, before anything is written. Records of the same architectures scored with
different settings are named in one warning line with the ``+where.`` filter that keeps one sweep.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tfnas.paths import REPO_ROOT
from tfnas.results import Record, config_hash, save
from tfnas.schema import FIGURE_FORMATS, SEARCH_STRATEGIES, AnalyzeConfig, ConfigError, check_overrides

METRICS = ("hidden_covariance_l1", "hidden_covariance_l2", "num_params")


def _rec(arch: int, scores: dict, **settings) -> Record:
    s = {"space": "nasbench_nlp", "arch": arch, "seed": 0, "batch_index": 0, **settings}
    return Record(space="nasbench_nlp", arch=arch, benchmark_id=str(arch), seed=0, config_hash=config_hash(s),
                  scores=scores, truth={"test_loss": 4.0 + 0.01 * arch, "status": "OK"}, settings=s)


def _write(folder: Path, n: int, seed: int = 0, **settings) -> None:
    rng = np.random.default_rng(seed)
    for arch in range(n):
        save(_rec(arch, {m: float(v) for m, v in zip(METRICS, rng.normal(size=len(METRICS)))}, **settings), folder)


def _analyze_py(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, str(REPO_ROOT / "analyze.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def _snapshot(folder: Path) -> dict:
    """File -> (mtime, content hash) of an analysis folder, Hydra's own run folder left out."""
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, hashlib.sha1(p.read_bytes()).hexdigest())
            for p in sorted(folder.rglob("*")) if p.is_file() and p.relative_to(folder).parts[0] != "hydra"}


QUICK = ["bootstrap=20", "learned.enabled=false", "search.simulate.enabled=false", "plots.formats=[png]",
         "tensorboard=false"]

#: (override(s), the start of the one line printed)
BAD = [
    (["ci=1.5"], "ci must be a number in (0, 1), got 1.5"),
    (["ci=0"], "ci must be a number in (0, 1), got 0"),
    (["top_fraction=2"], "top_fraction must be a number in (0, 1], got 2"),
    (["combine_sizes=[1,2]"], "combine_sizes must be a list of integers >= 2, got [1,2]"),
    (["combine=[[hidden_covariance_l1,hidden_covarianse_l2]]"],
     "combine names 'hidden_covarianse_l2', which the nasbench_nlp records do not have; "
     "did you mean hidden_covariance_l2?"),
    (["combine=[hidden_covariance_l1,hidden_covariance_l2]"], "combine must be null or a list of metric lists"),
    (["search=top_metric", "search.metric=hidden_covarianse_l1"],
     "search.metric names 'hidden_covarianse_l1', which the nasbench_nlp records do not have; "
     "did you mean hidden_covariance_l1?"),
    (["search.metric=-nope"], "search.metric names 'nope', which the nasbench_nlp records do not have"),
    (["search.combination=[foo]"], "search.combination names 'foo', which the nasbench_nlp records do not have"),
    (["search.budget=0"], "search.budget must be an integer >= 1, got 0"),
    (["search.batch=-1"], "search.batch must be an integer >= 1, got -1"),
    (["search.strategy=best"], "search.strategy must be null or random, top_metric, combination, learned, ego"),
    (["search.simulate.pool_fraction=3"], "search.simulate.pool_fraction must be a number in (0, 1], got 3"),
    (["search.simulate.strategies=[random,rnd]"], "search.simulate.strategies must be a list of values among"),
    (["plots.formats=[jpgx]"], "plots.formats must be a list of values among png, pdf"),
    (["learned.metrics=[foo]"], "learned.metrics names 'foo', which the nasbench_nlp records do not have"),
    (["learned.min_coverage=0"], "learned.min_coverage must be a number in (0, 1], got 0"),
]


@pytest.mark.parametrize("overrides, message", [b for b in BAD if "names" not in b[1] and "combine must" not in b[1]],
                         ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_ranges_and_choices_are_checked_on_the_command_line(overrides, message):
    with pytest.raises(ConfigError) as exc:
        check_overrides(AnalyzeConfig, overrides)
    assert str(exc.value).startswith(message)


def test_the_same_ranges_are_checked_in_check_inputs_and_for_a_plain_mapping(tmp_path):
    from tfnas.tasks.analyze import analyze, check_inputs

    _write(tmp_path / "r", 6)
    with pytest.raises(ConfigError, match=r"ci must be a number in \(0, 1\), got 1.5"):
        check_inputs({"results_dir": str(tmp_path / "r"), "ci": 1.5})  # 6 records: no interval would use it
    with pytest.raises(ConfigError, match=r"search.simulate.pool_fraction must be a number in \(0, 1\], got 3"):
        analyze({"results_dir": str(tmp_path / "r"), "search": {"simulate": {"pool_fraction": 3}}})
    assert not (tmp_path / "r" / "analysis").exists()


def test_right_values_pass():
    check_overrides(AnalyzeConfig, ["ci=0.9", "top_fraction=1", "search.budget=1", "search.simulate.tops=[0.1,1]",
                                    "plots.formats=[png,svg]", "search.strategy=null", "search.combination=[a,-b]",
                                    "learned.metrics=null", "search.simulate.enabled=auto", "combine_sizes=[2,3]"])


def test_the_schemas_lists_are_the_libraries():
    from matplotlib.figure import Figure

    from tfnas.search.strategies import STRATEGIES

    assert sorted(SEARCH_STRATEGIES) == sorted(STRATEGIES)
    assert set(FIGURE_FORMATS) <= set(Figure().canvas.get_supported_filetypes())


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    """A results folder of 30 records and its analysis, written once."""
    from tfnas.tasks.analyze import analyze

    root = tmp_path_factory.mktemp("analysed")
    _write(root / "results", 30)
    analyze({"results_dir": str(root / "results"), "bootstrap": 20, "learned": {"enabled": False},
             "search": {"simulate": {"enabled": False}}, "plots": {"formats": ["png"]}, "tensorboard": False})
    out = root / "results" / "analysis"
    assert {"scores.csv", "exclusions.csv", "correlations.csv", "summary.md", "scatter.png"} <= set(_snapshot(out))
    return root


@pytest.mark.parametrize("overrides, message", BAD, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_a_wrong_value_prints_one_line_and_leaves_the_analysis_as_it_was(analysed, overrides, message):
    out = analysed / "results" / "analysis"
    before = _snapshot(out)
    proc = _analyze_py("results_dir=results", *QUICK, *overrides, cwd=analysed)
    assert proc.returncode == 1, proc.stderr[-3000:]
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"analyze.py: {message}"), proc.stderr[-3000:]
    assert _snapshot(out) == before


def test_records_scored_with_different_settings_are_named_in_one_warning(tmp_path, caplog):
    from tfnas.analysis.load import load_records
    from tfnas.tasks.analyze import analyze

    _write(tmp_path / "a", 12, seed=0, paper_compat=False)
    _write(tmp_path / "b", 12, seed=1, paper_compat=True)  # the same architectures, other values
    dirs = [str(tmp_path / "a"), str(tmp_path / "b")]
    with caplog.at_level(logging.WARNING, logger="tfnas"):
        records = load_records(dirs)
    (line,) = [r.getMessage() for r in caplog.records if "conflicting" in r.getMessage()]
    assert "\n" not in line and line.startswith("36 conflicting value(s) for the same metric")
    assert "nasbench_nlp arch 0 (seed 0, batch 0) hidden_covariance_l1: kept" in line
    assert "paper_compat false vs true" in line and line.endswith("+where.paper_compat=false")
    assert records.conflict_hint == "+where.paper_compat=false"

    res = analyze({"results_dir": dirs, "out_dir": str(tmp_path / "out"), "bootstrap": 0,
                   "learned": {"enabled": False}, "search": {"simulate": {"enabled": False}},
                   "plots": {"formats": ["png"]}, "tensorboard": False})
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "conflicting values for the same metric in merged records: 36" in summary
    assert "select one sweep with +where.paper_compat=false" in summary and "where=..." not in summary
    assert res["nasbench_nlp"]["n_archs"] == 12

    # On the console: the same one line; the filter it names is the command line's and keeps one sweep.
    both = f"results_dir=[{dirs[0]},{dirs[1]}]"
    proc = _analyze_py(both, f"out_dir={tmp_path / 'out1'}", *QUICK, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    shown = [x for x in (proc.stdout + proc.stderr).splitlines() if "conflicting value(s)" in x]
    assert len(shown) == 1 and "WARNING" in shown[0] and shown[0].endswith("+where.paper_compat=false")
    proc = _analyze_py(both, f"out_dir={tmp_path / 'out2'}", *QUICK,
                       "+where.paper_compat=false", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "conflicting" not in proc.stdout + proc.stderr
    assert "left out by where={'paper_compat': False}: 12" in (tmp_path / "out2" / "summary.md").read_text()
