"""Records are strict JSON; records of the previous format (bare NaN tokens) are still read everywhere."""

from __future__ import annotations

import json
import math
import shutil
import subprocess

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

import tfnas.hydra_support  # noqa: F401  (resolvers)
from tfnas import collect, results, sweep
from tfnas.analysis.load import load_records
from tfnas.paths import REPO_ROOT
from tfnas.tasks.score import score, sweep_settings

REASONS = {"hidden_covariance_l1": "hidden state is constant: correlation undefined",
           "jacobian_more_noise": "Gram matrix overflows float64", "synflow": "product of weights underflows"}

# A record as version 1 wrote it: Python's json.dump with its NaN / Infinity extensions.
OLD_RECORD = """{
 "space": "nasbench_nlp", "arch": 3, "benchmark_id": "1000003", "seed": 0, "config_hash": "0123456789ab",
 "status": "ok", "error": null,
 "scores": {"hidden_covariance_l1": NaN, "jacobian_more_noise": Infinity, "synflow": -Infinity, "num_params": 12658000.0},
 "reasons": {"hidden_covariance_l1": "hidden state is constant: correlation undefined",
             "jacobian_more_noise": "Gram matrix overflows float64", "synflow": "product of weights underflows"},
 "truth": {"test_loss": 5.572614013821014, "status": "OK"},
 "seconds": 1.5, "source": "score", "settings": {"space": "nasbench_nlp", "arch": 3}, "extra": {}, "version": 1
}"""


def _strict(text: str):
    """Parse like a strict JSON reader: NaN, Infinity and -Infinity are errors."""
    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


def _record(arch: int = 3, config_hash: str = "0123456789ab", **scores) -> results.Record:
    return results.Record(space="nasbench_nlp", arch=arch, benchmark_id=str(1000000 + arch), seed=0,
                          config_hash=config_hash,
                          scores=scores, reasons=dict(REASONS), truth={"test_loss": 5.5726, "status": "OK"},
                          extra={"losses": [5.9, math.nan]})


def test_non_finite_scores_are_written_as_strict_json_and_read_back(tmp_path):
    import numpy as np

    rec = _record(hidden_covariance_l1=math.nan, jacobian_more_noise=np.float32("inf"), synflow=-math.inf,
                  num_params=12658000.0)
    path = results.save(rec, tmp_path)
    raw = _strict(path.read_text())  # would raise on a bare NaN / Infinity token
    assert raw["scores"] == {"hidden_covariance_l1": "NaN", "jacobian_more_noise": "Infinity", "synflow": "-Infinity",
                             "num_params": 12658000.0}
    assert raw["reasons"] == REASONS and raw["version"] == results.RECORD_VERSION == 2
    assert raw["extra"]["losses"] == [5.9, "NaN"]
    back = results.load(path)
    s = back["scores"]
    assert math.isnan(s["hidden_covariance_l1"]) and s["jacobian_more_noise"] == math.inf
    assert s["synflow"] == -math.inf and s["num_params"] == 12658000.0 and back["reasons"] == REASONS
    assert back["extra"]["losses"][0] == 5.9 and math.isnan(back["extra"]["losses"][1])
    assert back["truth"] == {"test_loss": 5.5726, "status": "OK"}


@pytest.mark.skipif(shutil.which("jq") is None or shutil.which("node") is None, reason="needs jq and node")
def test_jq_and_javascript_read_a_record_with_non_finite_scores(tmp_path):
    path = results.save(_record(hidden_covariance_l1=math.nan, synflow=-math.inf, num_params=5.0), tmp_path)
    jq = subprocess.run(["jq", "-c", ".scores", str(path)], capture_output=True, text=True, check=True)
    assert json.loads(jq.stdout) == {"hidden_covariance_l1": "NaN", "synflow": "-Infinity", "num_params": 5}
    js = "const r = JSON.parse(require('fs').readFileSync(process.argv[1], 'utf8')); console.log(r.scores.synflow)"
    node = subprocess.run(["node", "-e", js, str(path)], capture_output=True, text=True, check=True)
    assert node.stdout.strip() == "-Infinity"
    # The version-1 form is what these readers refuse.
    old = tmp_path / "old.json"
    old.write_text(OLD_RECORD)
    assert subprocess.run(["node", "-e", js, str(old)], capture_output=True, text=True).returncode != 0
    with pytest.raises(ValueError, match="non-standard JSON token NaN"):
        _strict(OLD_RECORD)


def test_old_records_with_bare_nan_are_read_by_results_collect_and_analysis(tmp_path):
    folder = tmp_path / "res" / "nasbench_nlp"
    folder.mkdir(parents=True)
    (folder / "arch_000003_0123456789ab.json").write_text(OLD_RECORD)
    results.save(_record(4, "ba9876543210", hidden_covariance_l1=-4.1e7, jacobian_more_noise=math.inf, synflow=2.0,
                         num_params=9.0), tmp_path / "res")
    old = results.load(folder / "arch_000003_0123456789ab.json")
    assert math.isnan(old["scores"]["hidden_covariance_l1"]) and old["scores"]["synflow"] == -math.inf
    assert old["reasons"] == REASONS

    table = collect.records_table(tmp_path / "res").set_index("arch")
    assert math.isnan(table.loc[3, "score/hidden_covariance_l1"]) and table.loc[3, "score/synflow"] == -math.inf
    assert table.loc[4, "score/jacobian_more_noise"] == math.inf and table.loc[4, "score/synflow"] == 2.0
    assert pd.api.types.is_float_dtype(table["score/synflow"])  # no strings leak into the table

    entries = {e.arch: e for e in load_records(tmp_path / "res").entries}
    assert math.isnan(entries[3].scores["hidden_covariance_l1"]) and entries[4].scores["jacobian_more_noise"] == math.inf
    assert entries[3].reasons["hidden_covariance_l1"] == REASONS["hidden_covariance_l1"]


@pytest.mark.slow
def test_sweep_missing_counts_an_old_record_as_done(data_dir, tmp_path):
    """A real record rewritten in the version-1 form (bare NaN) still counts as done for ``tfnas.sweep missing``."""
    overrides = [f"paths.data_dir={data_dir}", f"paths.results_dir={tmp_path / 'res'}", "metrics.names=[num_params]",
                 "logger=none", "threads=1"]
    with initialize_config_dir(config_dir=str(REPO_ROOT / "conf"), version_base="1.3"):
        cfg = compose("score", overrides=[*overrides, "arch=2"])
    assert score(cfg)["ok"] == 1
    (path,) = results.iter_record_files(tmp_path / "res")
    rec = json.loads(path.read_text())
    rec["scores"]["num_params"] = math.nan  # as if undefined, in the old encoding
    rec["version"] = 1
    path.write_text(json.dumps(rec, indent=1, allow_nan=True))
    assert "NaN" in path.read_text() and '"NaN"' not in path.read_text()
    space, data = instantiate(cfg.space, _convert_="all"), instantiate(cfg.data, _convert_="all")
    assert path.name == f"arch_000002_{results.config_hash(dict(sweep_settings(cfg, space, data), arch=2))}.json"
    (group,) = sweep.find_missing(["arch=range(0,4)", *overrides])
    assert group.total == 4 and group.missing == [0, 1, 3]


@pytest.mark.parametrize("override,message", [
    ("shard_siz=3", "no option 'shard_siz': did you mean shard_size?"),
    ("paper_compat=maybe", "paper_compat must be true or false, got maybe"),
    ("space=nasbench_nl", "Could not find 'space/nasbench_nl'"),
])
def test_sweep_missing_reports_a_wrong_override_in_one_line(override, message, capsys):
    assert sweep.main(["missing", "arch=range(0,4)", override]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("python -m tfnas.sweep: ") and message in err and "\n" not in err, err
