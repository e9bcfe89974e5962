"""score.py end to end: records, resume, failure isolation, TensorBoard, kill -9 and rerun."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException

import tfnas.hydra_support  # noqa: F401  (resolvers)
from tfnas import results
from tfnas.schema import ConfigError
from tfnas.tasks.score import score, sweep_settings

REPO = Path(__file__).resolve().parents[1]
CHEAP = "metrics.names=[hidden_covariance,num_params]"


def _cfg(data_dir, tmp_path, *overrides):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(
            "score",
            overrides=[
                f"paths.data_dir={data_dir}",
                f"paths.results_dir={tmp_path / 'results'}",
                f"space.benchmark={data_dir}/nasbench_nlp/recepies_example.json",
                CHEAP,
                "threads=2",
                *overrides,
            ],
        )


def _records(results_dir: Path) -> list[dict]:
    return [results.load(p) for p in results.iter_record_files(results_dir)]


def test_shard_writes_one_record_each_logs_tensorboard_and_resumes(data_dir, tmp_path):
    cfg = _cfg(data_dir, tmp_path, "shard=0", "shard_size=3")
    assert score(cfg) == {"ok": 3, "error": 0, "skipped": 0, "claimed": 0, "out_of_range": 0}
    recs = sorted(_records(tmp_path / "results"), key=lambda r: r["arch"])
    assert [r["arch"] for r in recs] == [0, 1, 2]
    for r in recs:
        assert r["status"] == "ok" and r["space"] == "nasbench_nlp" and r["seconds"] > 0
        assert all(math.isfinite(r["scores"][f"hidden_covariance_l{i}"]) for i in (1, 2, 3))
        assert r["settings"]["arch"] == r["arch"] and r["config_hash"] == results.config_hash(r["settings"])
    # TensorBoard: one run for the sweep, one point per architecture (step = arch).
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (run,) = {p.parent for p in (tmp_path / "results" / "tensorboard").rglob("events.out.tfevents*")}
    acc = EventAccumulator(str(run))
    acc.Reload()
    steps = {e.step: e.value for e in acc.Scalars("score/num_params")}
    assert steps == {r["arch"]: pytest.approx(r["scores"]["num_params"]) for r in recs}
    # Rerun: nothing recomputed, files untouched.
    mtimes = [p.stat().st_mtime_ns for p in results.iter_record_files(tmp_path / "results")]
    assert score(cfg) == {"ok": 0, "error": 0, "skipped": 3, "claimed": 0, "out_of_range": 0}
    assert mtimes == [p.stat().st_mtime_ns for p in results.iter_record_files(tmp_path / "results")]


def test_failing_architecture_is_recorded_and_the_sweep_goes_on(data_dir, tmp_path):
    recipes = json.loads((data_dir / "nasbench_nlp" / "recepies_example.json").read_text())
    bad = {"h_new_0": {"op": "activation_tanh", "input": ["ghost"]}}
    path = tmp_path / "recipes.json"
    path.write_text(json.dumps([recipes[0], bad, recipes[0]]))
    cfg = _cfg(data_dir, tmp_path, f"space.benchmark={path}", "shard=0", "shard_size=10")
    assert score(cfg) == {"ok": 2, "error": 1, "skipped": 0, "claimed": 0, "out_of_range": 0}
    (err,) = [r for r in _records(tmp_path / "results") if r["status"] == "error"]
    assert err["arch"] == 1 and "ghost" in err["error"] and "RecipeError" in err["error"]


@pytest.mark.parametrize(
    "override, message",
    [
        ("metrics.names=[hidden_covariance_l1]", "'hidden_covariance_l1' is a score of the metric 'hidden_covariance'"),
        ("metrics.names=[bogus]", "no metric 'bogus' for space=nasbench_nlp; available: activation_distance, "),
        ("shard=-1", "shard must be null or an integer >= 0, got -1"),
        ("arch=-1", "arch must be an integer >= 0, got -1"),
        ("threads=0", "threads must be an integer >= 1, got 0"),
    ],
)
def test_sweep_errors_fail_before_any_record(data_dir, tmp_path, override, message):
    with pytest.raises(ConfigError, match=message):
        score(_cfg(data_dir, tmp_path, override))
    assert not list(results.iter_record_files(tmp_path / "results"))


def test_the_schema_refuses_a_wrong_type_when_the_config_is_composed(data_dir, tmp_path):
    with pytest.raises(ConfigCompositionException, match="arch=abc"):
        _cfg(data_dir, tmp_path, "arch=abc")


def test_truncated_record_is_scored_again(data_dir, tmp_path):
    cfg = _cfg(data_dir, tmp_path, "arch=1")
    score(cfg)
    (path,) = results.iter_record_files(tmp_path / "results")
    path.write_text(path.read_text()[:50])  # e.g. a disk error cut it short
    assert score(cfg)["ok"] == 1
    assert results.load(path)["arch"] == 1


def test_out_of_range_arch_gets_one_clear_message(data_dir, tmp_path, caplog):
    cfg = _cfg(data_dir, tmp_path, "arch=10")
    with caplog.at_level("WARNING", logger="tfnas"):
        assert score(cfg)["out_of_range"] == 1
    assert "arch=10 is beyond the space" in caplog.text and "arch=0..9" in caplog.text
    assert not list(results.iter_record_files(tmp_path / "results"))


def test_config_hash_ignores_launcher_shard_threads_and_paths(data_dir, tmp_path):
    from hydra.utils import instantiate

    base = _cfg(data_dir, tmp_path)
    other = _cfg(data_dir, tmp_path / "elsewhere", "threads=1", "shard=3", "shard_size=7")
    changed = _cfg(data_dir, tmp_path, "seed=1")
    space, data = instantiate(base.space, _convert_="all"), instantiate(base.data, _convert_="all")
    h = results.config_hash(sweep_settings(base, space, data))
    assert h == results.config_hash(sweep_settings(other, space, data))
    assert h != results.config_hash(sweep_settings(changed, space, data))


@pytest.mark.slow
def test_kill_minus_9_mid_sweep_then_rerun_leaves_exactly_one_record_each(data_dir, tmp_path):
    out = tmp_path / "results"
    cmd = [
        sys.executable, str(REPO / "score.py"), "-m", "arch=range(0,6)",
        f"paths.data_dir={data_dir}", f"paths.results_dir={out}", f"paths.log_dir={tmp_path / 'logs'}",
        f"space.benchmark={data_dir}/nasbench_nlp/recepies_example.json", CHEAP, "threads=1",
    ]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while len(list(results.iter_record_files(out))) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(list(results.iter_record_files(out)))
    assert 2 <= done_before < 6, "the sweep must be killed in the middle"
    subprocess.run(cmd, cwd=tmp_path, env=env, check=True, capture_output=True, timeout=600)
    recs = _records(out)
    assert sorted(r["arch"] for r in recs) == list(range(6))
    assert all(r["status"] == "ok" for r in recs)
    # Job folders are named by architecture, not by Hydra's job number.
    sweep_dirs = sorted((tmp_path / "logs" / "score" / "multirun").iterdir())
    assert {p.name for p in sweep_dirs[-1].iterdir() if p.is_dir()} >= {f"arch_{i}" for i in range(6)}
