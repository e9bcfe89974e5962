"""Scale-out: launcher configs, thread defaults, path pinning, and resume of partial sweeps.

End-to-end runs use the real WikiText-2 NAS-Bench-NLP logs and PTB with the
cheapest metric (``num_params``), so each ``score.py`` start costs a few
seconds of Python start-up only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import instantiate
from omegaconf import OmegaConf

import tfnas.hydra_support as hs
from tfnas import results, sweep
from tfnas.paths import REPO_ROOT
from tfnas.tasks.score import score, sweep_settings

CHEAP = "metrics.names=[num_params]"


def _compose(overrides, hydra_cfg=False):
    with initialize_config_dir(config_dir=str(REPO_ROOT / "conf"), version_base="1.3"):
        return compose(config_name="score", overrides=list(overrides), return_hydra_config=hydra_cfg)


def _records(results_dir: Path) -> Counter:
    return Counter(int(p.name.split("_")[1]) for p in (results_dir / "nasbench_nlp").glob("arch_*.json"))


# --------------------------------------------------------------------------- threads and paths


@pytest.mark.parametrize(
    "launcher, cores, expected",
    [
        ({"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": -1}, 8, 1),
        ({"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": 2}, 8, 4),
        ({"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": -3}, 8, 1),  # 6 workers
        ({"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": 3}, 2, 1),
        ({"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher", "cpus_per_task": 4}, 64, 4),
        ({"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher", "cpus_per_task": None}, 6, 6),
        ({"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher", "cpus_per_task": None}, 16, 1),
        ({"_target_": "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher", "ray": {"remote": {"num_cpus": 2}}}, 16, 2),
        ({"_target_": "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher", "ray": {"remote": {}}}, 16, 1),
        ({"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}, 12, 12),
    ],
)
def test_default_threads_share_the_cores(launcher, cores, expected):
    assert hs.default_threads(OmegaConf.create(launcher), cores=cores, env={}) == expected


def test_default_threads_env_wins_and_is_checked():
    joblib = OmegaConf.create({"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": -1})
    assert hs.default_threads(joblib, cores=8, env={"TFNAS_THREADS": "3"}) == 3
    for bad in ("0", "-2", "two"):
        with pytest.raises(ValueError, match="TFNAS_THREADS"):
            hs.default_threads(joblib, cores=8, env={"TFNAS_THREADS": bad})
    with pytest.raises(ValueError, match="n_jobs=0"):
        hs.joblib_workers(0, 8)


def test_gpu_for_job_spreads_jobs_over_the_gpus():
    assert [hs.gpu_for_job(k, 4) for k in range(6)] == [[0], [1], [2], [3], [0], [1]]
    assert hs.gpu_for_job(5, 1) == 1 and hs.gpu_for_job(5, 0) == 1  # one GPU or none: Lightning's choice
    assert _compose(["trainer.devices=${tfnas_gpu:}"]).trainer.devices == hs.gpu_for_job(0, torch.cuda.device_count())


def test_absolute_path(tmp_path):
    assert hs.absolute_path("results", "/launch/dir") == "/launch/dir/results"
    assert hs.absolute_path("../shared/data", "/a/b") == "/a/b/../shared/data"
    assert hs.absolute_path(str(tmp_path), "/elsewhere") == str(tmp_path)
    assert hs.absolute_path("~/r", "/x") == str(Path.home() / "r")
    with pytest.raises(ValueError, match="empty path"):
        hs.absolute_path("", "/x")


def test_results_dir_is_absolute_from_the_launch_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = _compose(["paths.results_dir=out/records"])
    assert cfg.results_dir == str(tmp_path / "out" / "records")
    assert _compose([f"paths.results_dir={tmp_path}/abs"]).results_dir == f"{tmp_path}/abs"


# --------------------------------------------------------------------------- launcher configs


def test_launcher_configs_compose_without_schema_warnings(recwarn):
    slurm = _compose(["hydra/launcher=slurm", "hydra.launcher.partition=gpu"], hydra_cfg=True).hydra.launcher
    assert slurm._target_.endswith("SlurmLauncher")
    # values from conf/hydra/launcher/slurm.yaml on top of the plugin's schema, which still validates keys
    assert (slurm.cpus_per_task, slurm.mem_gb, slurm.tasks_per_node, slurm.partition) == (4, 8, 1, "gpu")
    assert slurm.array_parallelism == 256 and "qos" in slurm and "additional_parameters" in slurm
    cores = _compose(["hydra/launcher=cores"], hydra_cfg=True).hydra.launcher
    assert cores._target_.endswith("JoblibLauncher") and cores.n_jobs == -1 and "pre_dispatch" in cores
    ray = _compose(["hydra/launcher=ray_cluster"], hydra_cfg=True).hydra.launcher
    assert ray._target_.endswith("RayLauncher") and ray.ray.remote.num_cpus == 1
    # present and null: hydra-ray-launcher would set 75 MB, which Ray 2.x refuses when joining a cluster
    assert "object_store_memory" in ray.ray.init and ray.ray.init.object_store_memory is None
    full = _compose(["hydra/launcher=submitit_local"], hydra_cfg=True)
    assert full.hydra.launcher._target_.endswith("LocalLauncher")
    assert full.hydra.sweeper.max_batch_size == 1000  # below SLURM's usual MaxArraySize
    with pytest.raises(Exception, match="cpus_per_tsk"):
        _compose(["hydra/launcher=slurm", "hydra.launcher.cpus_per_tsk=2"], hydra_cfg=True)
    assert not [w for w in recwarn if "schema" in str(w.message)]


# --------------------------------------------------------------------------- expanding a sweep


def test_expand_gives_the_basic_sweepers_jobs():
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    args = ["arch=range(0,3)", "seed=0,1", CHEAP, "hydra/launcher=cores"]
    fixed, jobs = sweep.expand(args)
    assert fixed == [CHEAP, "hydra/launcher=cores"]
    (batch,) = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(args), None)
    hydra_jobs = sorted(tuple(sorted(set(j) - set(fixed))) for j in batch)
    assert sorted(tuple(sorted(s + i)) for s, i in jobs) == hydra_jobs
    assert len(jobs) == 6 and all(len(i) == 1 and i[0].startswith("arch=") for _, i in jobs)
    with pytest.raises(ValueError, match="only lists and range"):
        sweep.expand(["seed=interval(0,1)"])


# --------------------------------------------------------------------------- missing records


@pytest.fixture(scope="module")
def partial_sweep(tmp_path_factory, data_dir):
    """Records for archs 0, 2 and 5 of a num_params sweep, written by the scoring task itself."""
    out = tmp_path_factory.mktemp("partial")
    base = [CHEAP, "logger=none", "threads=1", f"paths.results_dir={out}", f"paths.data_dir={data_dir}"]
    for i in (0, 2, 5):
        counts = score(_compose([*base, f"arch={i}"]))
        assert counts["ok"] == 1
    return out, base


def test_missing_lists_exactly_the_rest(partial_sweep):
    out, base = partial_sweep
    assert sorted(_records(out)) == [0, 2, 5]
    (g,) = sweep.find_missing(["arch=range(0,8)", *base])
    assert (g.total, g.missing, g.errors, g.shard_size) == (8, [1, 3, 4, 6, 7], [], None)
    assert g.overrides() == ["arch=1,3,4,6,7"]
    # regrouped into shards of 3: archs 0-2, 3-5, 6-8 all hold a missing one
    (g3,) = sweep.find_missing(["arch=range(0,8)", *base], shard_size=3)
    assert g3.overrides(regrouped=True) == ["shard=0,1,2", "shard_size=3"]
    (g4,) = sweep.find_missing(["arch=0,2,5,6", *base], shard_size=4)
    assert g4.missing == [6] and g4.overrides(regrouped=True) == ["shard=1", "shard_size=4"]
    # a shard sweep covers shard*size .. +size-1; arch 8 exists in the space, so it counts too
    (gs,) = sweep.find_missing(["shard=range(0,3)", "shard_size=3", *base])
    assert gs.total == 9 and gs.missing == [1, 3, 4, 6, 7, 8] and gs.index_override() == "shard=0,1,2"
    (done,) = sweep.find_missing(["arch=0,2,5", *base])
    assert done.missing == [] and done.overrides() == [] and done.command() == ""


def test_missing_uses_the_tasks_config_hash(partial_sweep):
    out, base = partial_sweep
    cfg = _compose([*base, "arch=2"])
    space, data = instantiate(cfg.space, _convert_="all"), instantiate(cfg.data, _convert_="all")
    chash = results.config_hash(dict(sweep_settings(cfg, space, data), arch=2))
    assert results.record_path(out, "nasbench_nlp", 2, chash).is_file()
    rec = json.loads(results.record_path(out, "nasbench_nlp", 2, chash).read_text())
    assert rec["config_hash"] == chash and rec["arch"] == 2
    # any setting in the hash makes every record missing; launcher, threads and shard layout do not
    (seed1,) = sweep.find_missing(["arch=range(0,8)", *base, "seed=1"])
    assert seed1.missing == list(range(8))
    (layout,) = sweep.find_missing(["arch=range(0,8)", *base, "threads=2", "hydra/launcher=cores", "shard_size=7"])
    assert layout.missing == [1, 3, 4, 6, 7]
    (over,) = sweep.find_missing(["arch=range(0,3)", *base, "overwrite=true"])
    assert over.missing == [0, 1, 2]


def test_missing_groups_other_swept_settings_and_clips_to_the_space(partial_sweep):
    out, base = partial_sweep
    groups = sweep.find_missing(["arch=range(0,4)", "seed=0,1", *base])
    assert [(g.swept, g.missing) for g in groups] == [(["seed=0"], [1, 3]), (["seed=1"], [0, 1, 2, 3])]
    cmd = groups[1].command()
    assert cmd.startswith("python score.py -m ") and "seed=1" in cmd and cmd.endswith("arch=0,1,2,3")
    (tail,) = sweep.find_missing(["arch=range(340,350)", *base])  # the WikiText-2 logs hold 345 cells
    assert tail.total == 5 and tail.missing == [340, 341, 342, 343, 344]


def test_retry_errors_and_stale_temporary_files(partial_sweep, tmp_path):
    out, base = partial_sweep
    cfg = _compose([*base, "arch=3"])
    space, data = instantiate(cfg.space, _convert_="all"), instantiate(cfg.data, _convert_="all")
    chash = results.config_hash(dict(sweep_settings(cfg, space, data), arch=3))
    err = results.Record(space="nasbench_nlp", arch=3, benchmark_id="x", seed=0, config_hash=chash, status="error", error="boom")
    path = results.save(err, out)
    tmp = out / "nasbench_nlp" / ".arch_000004_abc.json.123.tmp"  # what a SIGKILL mid-write leaves
    tmp.write_text("{")
    try:
        (g,) = sweep.find_missing(["arch=range(0,5)", *base])
        assert g.missing == [1, 4] and g.errors == [] and g.stale_tmp == 1
        (r,) = sweep.find_missing(["arch=range(0,5)", *base], retry_errors=True)
        assert r.missing == [1, 4] and r.errors == [3]
        assert r.overrides() == ["arch=1,3,4", "overwrite=true"]
    finally:
        path.unlink()
        tmp.unlink()


# --------------------------------------------------------------------------- end to end


def _run(args, cwd, timeout=300):
    env = dict(os.environ, HYDRA_FULL_ERROR="1")
    env.pop("TFNAS_THREADS", None)
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_sharded_submitit_sweep_then_resume_only_the_missing(tmp_path, data_dir, monkeypatch, capsys):
    """submitit_local, 2 shards x 2 archs, started from another directory with relative results and data paths
    and hydra.job.chdir=true (jobs run inside their own folders); then two records are lost and the resume
    command's output sweeps exactly those two."""
    common = [CHEAP, "logger=none", "paths.results_dir=res", f"paths.data_dir={os.path.relpath(data_dir, tmp_path)}",
              "paths.log_dir=logs"]
    _run(
        [str(REPO_ROOT / "score.py"), "-m", "hydra/launcher=submitit_local", "shard=range(0,2)", "shard_size=2",
         "hydra.job.chdir=true", *common],
        cwd=tmp_path,
    )
    res = tmp_path / "res"
    assert _records(res) == Counter({0: 1, 1: 1, 2: 1, 3: 1})  # every record once, in the launch directory
    table = pd.read_csv(res / "nasbench_nlp" / "records.csv")  # SweepSummary ran after the submitit jobs
    assert sorted(table["arch"]) == [0, 1, 2, 3] and set(table["status"]) == {"ok"}
    shard_logs = sorted((tmp_path / "logs").rglob("shard_*/score.log"))
    assert len(shard_logs) == 2
    assert all("with 1 thread(s)" in p.read_text() for p in shard_logs)  # submitit_local: 1 thread per job

    # two jobs "killed": their records never landed
    for p in (res / "nasbench_nlp").glob("arch_00000[12]_*.json"):
        p.unlink()
    kept = {p.name: p.stat().st_mtime_ns for p in (res / "nasbench_nlp").glob("arch_*.json")}
    assert len(kept) == 2
    monkeypatch.chdir(tmp_path)  # the command line below, run where the sweep was started
    assert sweep.main(["missing", "arch=range(0,4)", *common]) == 0
    found = capsys.readouterr()
    assert found.out.split() == ["arch=1,2"]
    assert "4 architectures of nasbench_nlp, 2 with a record, 2 missing" in found.err

    _run([str(REPO_ROOT / "score.py"), "-m", *found.out.split(), *common], cwd=tmp_path)
    assert _records(res) == Counter({0: 1, 1: 1, 2: 1, 3: 1})
    assert {p.name: p.stat().st_mtime_ns for p in (res / "nasbench_nlp").glob("arch_*.json") if p.name in kept} == kept
    resumed = sorted(p.parent.name for p in (tmp_path / "logs").rglob("arch_*/score.log"))
    assert resumed == ["arch_1", "arch_2"]  # only the missing architectures were swept
    assert sorted(pd.read_csv(res / "nasbench_nlp" / "records.csv")["arch"]) == [0, 1, 2, 3]
    (again,) = sweep.find_missing(["arch=range(0,4)", *common[:2], f"paths.results_dir={res}", common[3]])
    assert again.total == 4 and again.todo == []
