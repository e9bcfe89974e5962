"""The data folder is one absolute folder, whatever the directory a job or test runs in.

A relative ``TFNAS_DATA_DIR`` or ``paths.data_dir`` is taken from the directory
the command starts in, once, when the configuration is read; every config
that reads data reads that absolute path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import tfnas.hydra_support  # noqa: F401  (resolvers)
from tfnas import results
from tfnas.paths import REPO_ROOT, analysis_dir, default_data_dir, repo_data_dir

# Every config group that reads the data folder: the scoring data and space of both spaces, the
# training config with the BERT pretraining, GLUE and the quick BERT experiment, and the analysis.
CONFIGS = [
    ("score", []),
    ("score", ["space=nasbench_bert"]),
    ("train", []),
    ("train", ["experiment=quick_bert"]),
    ("analyze", []),
]


def _strings(node, key=""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _strings(v, f"{key}.{k}" if key else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _strings(v, f"{key}[{i}]")
    elif isinstance(node, str):
        yield key, node


def _resolved(name, overrides):
    with initialize_config_dir(config_dir=str(REPO_ROOT / "conf"), version_base="1.3"):
        return OmegaConf.to_container(compose(config_name=name, overrides=overrides), resolve=True)


def test_default_data_dir_is_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TFNAS_DATA_DIR", "rel/data")
    assert default_data_dir() == tmp_path / "rel" / "data"
    monkeypatch.setenv("TFNAS_DATA_DIR", str(tmp_path / "abs"))
    assert default_data_dir() == tmp_path / "abs"
    monkeypatch.delenv("TFNAS_DATA_DIR")
    assert default_data_dir() == repo_data_dir() == REPO_ROOT.parent / "shared" / "data"
    assert repo_data_dir().is_absolute()


@pytest.mark.parametrize("how", ["env", "override"])
@pytest.mark.parametrize("name,extra", CONFIGS)
def test_every_config_reads_the_data_folder_as_one_absolute_path(name, extra, how, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if how == "env":
        monkeypatch.setenv("TFNAS_DATA_DIR", "some/data")
        overrides = extra
    else:
        monkeypatch.delenv("TFNAS_DATA_DIR", raising=False)
        overrides = [*extra, "paths.data_dir=some/data"]
    cfg = _resolved(name, overrides)
    assert cfg["paths"]["absolute_data_dir"] == str(tmp_path / "some" / "data")
    uses = {k: v for k, v in _strings(cfg) if "some/data" in v and k != "paths.data_dir"}
    assert uses, "the config reads no data path"
    wrong = {k: v for k, v in uses.items() if not v.startswith(str(tmp_path / "some" / "data"))}
    assert not wrong


@pytest.mark.parametrize("space", ["nasbench_nlp", "nasbench_bert", "lts_gpt2_wt103"])
def test_the_same_data_in_another_folder_gives_the_same_records(space, synthetic_data_dir, tmp_path):
    """The settings hash of a record names the data's files, not the folder they are in (README: moving
    the data folder keeps the records valid): a copy elsewhere finds the same records. A copy, not a
    symlink, so that a path resolved to its target could not pass either."""
    from hydra.utils import instantiate

    from tfnas.data.causal_datamodule import CausalLMDataModule
    from tfnas.tasks.score import sweep_settings
    from tfnas.tasks.train_gpt import gpt_train_settings

    moved = tmp_path / "elsewhere" / "data"
    shutil.copytree(synthetic_data_dir, moved)
    hashes, described = [], []
    for folder in (synthetic_data_dir, moved):
        with initialize_config_dir(config_dir=str(REPO_ROOT / "conf"), version_base="1.3"):
            base = [f"paths.data_dir={folder}", f"paths.results_dir={tmp_path / 'results'}", f"space={space}"]
            cfg = compose("score", overrides=base)
            train = (compose("train", overrides=[*base, "experiment=quick_gpt",
                                                 f"causal_lm.data.train_path={folder}/ptb/ptb.train.txt"])
                     if space.startswith("lts_gpt2") else None)
        data = instantiate(cfg.data, _convert_="all")
        space_obj = instantiate(cfg.space, _convert_="all")
        hash_ = [results.config_hash(sweep_settings(cfg, space_obj, data))]
        if train is not None:
            hash_.append(results.config_hash(gpt_train_settings(train, space_obj, data)))
            described.append(CausalLMDataModule(text=data).describe())
        hashes.append(hash_)
    assert hashes[0] == hashes[1]
    assert not described or described[0] == described[1]


def test_without_tfnas_data_dir_the_data_is_beside_the_repository(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TFNAS_DATA_DIR", raising=False)
    cfg = _resolved("score", [])
    assert cfg["paths"]["absolute_data_dir"] == str(repo_data_dir())
    assert cfg["space"]["benchmark"] == str(repo_data_dir() / "nasbench_nlp" / "train_logs_wikitext-2.zip")


def test_analysis_writes_beside_its_records_by_default():
    assert analysis_dir("results") == str(Path("results") / "analysis")
    assert analysis_dir(["a", "b"]) == "analysis"
    cfg = _resolved("analyze", [])
    assert (cfg["results_dir"], cfg["out_dir"]) == ("results", str(Path("results") / "analysis"))
    assert _resolved("analyze", ["results_dir=runs/x"])["out_dir"] == str(Path("runs/x") / "analysis")


@pytest.mark.slow
def test_relative_tfnas_data_dir_in_a_sweep_whose_jobs_run_in_their_own_folders(data_dir, tmp_path):
    """A relative TFNAS_DATA_DIR, from a directory that is neither the repository nor the data's parent,
    with hydra.job.chdir=true: each job runs in its own folder and still finds the data."""
    cwd = tmp_path / "launch"
    cwd.mkdir()
    env = {**os.environ, "TFNAS_DATA_DIR": os.path.relpath(data_dir, cwd), "HYDRA_FULL_ERROR": "1"}
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "score.py"), "-m", "arch=0,1", "metrics.names=[num_params]", "logger=none",
         "threads=1", "hydra.job.chdir=true", "paths.results_dir=res", "paths.log_dir=logs"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    recs = [results.load(p) for p in results.iter_record_files(cwd / "res")]
    assert sorted(r["arch"] for r in recs) == [0, 1] and {r["status"] for r in recs} == {"ok"}
    assert all(r["truth"]["test_loss"] > 0 for r in recs)  # the benchmark's ground truth was read
