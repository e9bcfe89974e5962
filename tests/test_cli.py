"""The command line as a user meets it: a wrong value is one line on stderr; --help; the metrics of a space.

The mistakes of issue 14 run ``score.py`` as a subprocess: they fail before
torch is imported (the schema check runs first), so each costs about a second.
Two runs load a space (an ``arch`` beyond it, single run and multirun); they
use the 10-architecture example benchmark.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from tfnas.hydra_support import default_threads  # noqa: F401  (registers the resolvers and the schemas)
from tfnas.schema import (ConfigError, ScoreConfig, TrainConfig, check_machine, check_overrides, check_trainer, options_help,
                          validate)

REPO = Path(__file__).resolve().parents[1]

#: The mistakes of issue 14 and the one line each now gets.
MISTAKES = [
    ("paper_compat=no", "paper_compat must be true or false, got no"),
    ("paper_compat=maybe", "paper_compat must be true or false, got maybe"),
    ("arch=abc", "arch must be an integer >= 0, got abc"),
    ("arch=-1", "arch must be an integer >= 0, got -1"),
    ("threads=-1", "threads must be an integer >= 1, got -1"),
    ("shard=-2", "shard must be null or an integer >= 0, got -2"),
    ("seed=x", "seed must be an integer >= 0, got x"),
]


def _run(script: str, *args: str, cwd: Path, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HYDRA_FULL_ERROR": "", **(env or {})}
    return subprocess.run([sys.executable, *([str(REPO / script)] if script.endswith(".py") else ["-m", script]),
                           *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _common(data_dir: Path, tmp_path: Path) -> list[str]:
    return [f"paths.data_dir={data_dir}", f"paths.results_dir={tmp_path / 'results'}", f"paths.log_dir={tmp_path / 'logs'}",
            "logger=none", f"space.benchmark={data_dir}/nasbench_nlp/recepies_example.json",
            "metrics.names=[num_params]", "threads=1"]


@pytest.mark.parametrize("override, message", MISTAKES)
def test_each_mistake_is_caught_with_its_message(override, message):
    with pytest.raises(ConfigError) as exc:
        check_overrides(ScoreConfig, ["-m", override, "logger=none"])
    assert str(exc.value) == message


@pytest.mark.parametrize("args", [
    ["paper_compat=true", "paper_compat=False", "arch=12", "shard=null", "shard=3", "threads=2", "seed=7"],
    ["-m", "arch=range(0,4000)", "threads=${tfnas_threads:}", "seed=0,1,2", "--cfg", "job"],
    ["space=nasbench_bert", "space.generate=5", "+foo=bar", "hydra.launcher.n_jobs=-1", "~shard"],
])
def test_right_values_and_other_keys_pass(args):
    check_overrides(ScoreConfig, args)


def test_a_misspelled_option_is_named_with_the_closest_one():
    with pytest.raises(ConfigError) as exc:
        check_overrides(ScoreConfig, ["seeed=1"])
    assert str(exc.value) == "no option 'seeed': did you mean seed? (--help lists them; +seeed=... adds a new key)"


def test_every_value_of_a_sweep_is_checked():
    with pytest.raises(ConfigError, match="arch must be an integer >= 0, got -1"):
        check_overrides(ScoreConfig, ["-m", "arch=range(-1,3)"])
    with pytest.raises(ConfigError, match="seed must be an integer >= 0, got x"):
        check_overrides(ScoreConfig, ["-m", "seed=0,1,x"])


def test_command_line_mistakes_print_one_line_and_exit_1(tmp_path, synthetic_data_dir):
    for override, message in MISTAKES:
        proc = _run("score.py", override, f"paths.data_dir={synthetic_data_dir}", "logger=none",
                    f"paths.results_dir={tmp_path / 'results'}", cwd=tmp_path)
        assert proc.returncode == 1, (override, proc.stderr)
        assert proc.stderr.splitlines() == [f"score.py: {message}"], override
    assert not (tmp_path / "results").exists()
    # HYDRA_FULL_ERROR=1: the same error with its traceback
    proc = _run("score.py", "arch=abc", cwd=tmp_path, env={"HYDRA_FULL_ERROR": "1"})
    assert proc.returncode != 0 and "Traceback" in proc.stderr
    assert "tfnas.schema.ConfigError: arch must be an integer >= 0, got abc" in proc.stderr


def test_resolved_values_are_checked_at_task_start(synthetic_data_dir, tmp_path, monkeypatch):
    paths = [f"paths.data_dir={synthetic_data_dir}", f"paths.results_dir={tmp_path}"]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("score", overrides=paths)
        validate(cfg, ScoreConfig)
        monkeypatch.setenv("TFNAS_THREADS", "-1")
        with pytest.raises(ConfigError, match="^threads must be an integer >= 1: .*TFNAS_THREADS must be a positive"):
            validate(cfg, ScoreConfig)
        # an override that bypasses the command-line check (compose API) is still range-checked
        monkeypatch.delenv("TFNAS_THREADS")
        with pytest.raises(ConfigError, match="^shard_size must be an integer >= 1, got 0$"):
            validate(compose("score", overrides=[*paths, "shard_size=0"]), ScoreConfig)
        # an experiment with another space: one line naming the experiments
        train = compose("train", overrides=[*paths, "space=nasbench_bert", "experiment=quick"])
        with pytest.raises(ConfigError) as exc:
            validate(train, TrainConfig)
        assert str(exc.value) == (
            "experiment=quick is written for space=nasbench_nlp; with space=nasbench_bert use experiment=quick_bert "
            "(experiments: quick for nasbench_nlp, quick_bert for nasbench_bert, quick_gpt for lts_gpt2_wt103)")
        for space, experiment in [("nasbench_nlp", "quick"), ("nasbench_bert", "quick_bert"), ("lts_gpt2_wt103", "quick_gpt")]:
            validate(compose("train", overrides=[*paths, f"space={space}", f"experiment={experiment}"]), TrainConfig)


def test_single_run_beyond_the_space_fails_and_a_multirun_warns(data_dir, tmp_path):
    single = _run("score.py", "arch=10", *_common(data_dir, tmp_path), cwd=tmp_path)
    assert single.returncode == 1, single.stderr
    assert single.stderr.splitlines() == [
        "score.py: arch=10 is beyond the space: nasbench_nlp has 10 architectures (arch=0..9); nothing to score"]
    multi = _run("score.py", "-m", "arch=10,11", *_common(data_dir, tmp_path), cwd=tmp_path)
    assert multi.returncode == 0, multi.stderr
    warnings = [line for line in (multi.stdout + multi.stderr).splitlines() if "is beyond the space" in line]
    assert len(warnings) == 1 and "arch=10 is beyond the space" in warnings[0] and "WARNING" in warnings[0]


@pytest.mark.skipif(torch.cuda.is_available() or torch.backends.mps.is_available(), reason="a GPU is there")
def test_a_run_this_machine_cannot_do_fails_before_any_work(data_dir, tmp_path):
    """``trainer.accelerator=gpu`` without a GPU and a missing ``ckpt_path`` are one line and exit
    status 1, not an error record of the architecture that a corrected rerun would then skip."""
    gpu = _run("score.py", "trainer.accelerator=gpu", "arch=4", *_common(data_dir, tmp_path), cwd=tmp_path)
    assert gpu.returncode == 1, gpu.stderr
    assert gpu.stderr.splitlines() == [
        f"score.py: trainer.accelerator=gpu: torch sees no GPU on this machine (torch {torch.__version__}); "
        "use trainer.accelerator=auto (any GPU, else the CPU) or one of: cpu"]
    ckpt = _run("train.py", "experiment=quick", "arch=2", "ckpt_path=/nonexistent.ckpt", *_common(data_dir, tmp_path),
                cwd=tmp_path)
    assert ckpt.returncode == 1, ckpt.stderr
    assert ckpt.stderr.splitlines() == ["train.py: ckpt_path=/nonexistent.ckpt: no such checkpoint file"]
    assert not (tmp_path / "results").exists()


def test_trainer_settings_are_checked_against_this_machine(tmp_path):
    check_trainer({"accelerator": "auto", "devices": 1})
    check_trainer({"accelerator": "cpu", "devices": "auto"})
    # several devices: Lightning would start a process per device, each rerunning the whole job (it hung)
    with pytest.raises(ConfigError, match=r"^trainer.devices=4: a job runs on one device, not 4 \(cpu\); spread"):
        check_trainer({"accelerator": "cpu", "devices": 4})
    with pytest.raises(ConfigError, match=r"^trainer.accelerator must be auto, gpu or one of cpu, cuda, mps, tpu, got CPU$"):
        check_trainer({"accelerator": "CPU"})
    with pytest.raises(ConfigError, match=r"^glue.trainer.devices=0: not usable with the cpu accelerator"):
        check_trainer({"accelerator": "cpu", "devices": 0}, "glue.trainer")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=r"^trainer.accelerator=cuda: not available on this machine"):
            check_trainer({"accelerator": "cuda"})
    else:  # one device more than the machine has
        n = torch.cuda.device_count()
        with pytest.raises(ConfigError, match=rf"^trainer.devices=\[{n}\]: not usable with the cuda accelerator; "
                                              rf"this machine has {n} CUDA device\(s\)"):
            check_trainer({"accelerator": "gpu", "devices": [n]})
    # every Trainer of a composed training config, and its ckpt_path
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        paths = [f"paths.data_dir={tmp_path}", f"paths.results_dir={tmp_path}"]
        check_machine(compose("train", overrides=[*paths, f"ckpt_path={__file__}"]))
        with pytest.raises(ConfigError, match=r"^electra.trainer.devices=0: "):
            check_machine(compose("train", overrides=[*paths, "electra.trainer.devices=0"]))
        with pytest.raises(ConfigError, match=r"^ckpt_path=nothing/here.ckpt: no such checkpoint file$"):
            check_machine(compose("train", overrides=[*paths, "ckpt_path=nothing/here.ckpt"]))


def test_one_metric_name_needs_no_brackets(data_dir, tmp_path):
    """``metrics.names=num_params`` is the list ``[num_params]`` (it was read letter by letter: no metric 'n')."""
    import json

    from hydra.utils import instantiate

    from tfnas.schema import metric_names
    from tfnas.tasks.score import check_metrics

    common = [a for a in _common(data_dir, tmp_path) if not a.startswith("metrics.names=")]
    proc = _run("score.py", "arch=0", "metrics.names=num_params", *common, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (path,) = (tmp_path / "results" / "nasbench_nlp").glob("arch_000000_*.json")
    record = json.loads(path.read_text())
    assert record["status"] == "ok" and record["settings"]["metrics"] == ["num_params"] and "num_params" in record["scores"]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        for space in ("nasbench_nlp", "nasbench_bert"):
            cfg = compose("score", overrides=[f"paths.data_dir={data_dir}", f"space={space}",
                                              "metrics.names=hidden_covariance"])
            assert metric_names(cfg.metrics) == ["hidden_covariance"]
            check_metrics(cfg, instantiate(cfg.space, _convert_="all"))


@pytest.mark.parametrize("task, options", [
    ("score", ["arch", "paper_compat", "shard_size", "threads", "python -m tfnas.metrics nasbench_nlp",
               "space: lts_gpt2_lm1b, lts_gpt2_wt103, nasbench_bert, nasbench_nlp", "'arch=range(0,4000)'"]),
    ("train", ["experiment=quick_bert", "ckpt_path", "quick_gpt: lts_gpt2_wt103"]),
    ("analyze", ["results_dir", "results/ -> results/analysis/", "folds", "[an integer >= 2]"]),
])
def test_help_shows_the_tfnas_options(task, options, tmp_path):
    proc = _run(f"{task}.py", "--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for text in options:
        assert text in proc.stdout, text
    for line in options_help(task).splitlines():
        assert line in proc.stdout


def test_metrics_of_a_space_by_the_name_the_user_types(tmp_path):
    proc = _run("tfnas.metrics", "nasbench_nlp", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("space=nasbench_nlp (model family rnn): 17 metrics")
    (hc,) = [line for line in lines if line[2:].startswith("hidden_covariance ")]
    assert hc.startswith("* ") and "Hidden covariance of each layer" in hc and hc.endswith("-> hidden_covariance_l1..l3")
    assert any(line.startswith("  synflow ") for line in lines)  # a proxy: not in the default set
    bad = _run("tfnas.metrics", "nasbench_nl", cwd=tmp_path)
    assert bad.returncode == 1
    assert bad.stderr.splitlines() == ["python -m tfnas.metrics: no space 'nasbench_nl'; the spaces: "
                                       "lts_gpt2_lm1b, lts_gpt2_wt103, nasbench_bert, nasbench_nlp"]


def test_scoring_data_of_another_family_fails_before_any_work(synthetic_data_dir, tmp_path):
    from hydra.utils import instantiate

    from tfnas.tasks.score import check_data

    paths = [f"paths.data_dir={synthetic_data_dir}", f"paths.results_dir={tmp_path}"]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        for space, data in [("nasbench_nlp", "text_cpu"), ("nasbench_bert", "nasbench_nlp"), ("lts_gpt2_wt103", "text")]:
            cfg = compose("score", overrides=[*paths, f"space={space}", f"data={data}"])
            with pytest.raises(ConfigError, match=f"is scoring data of the .* family; space={space} is the "):
                check_data(cfg, instantiate(cfg.space, _convert_="all"))
        for space, data in [("nasbench_nlp", "ptb"), ("nasbench_bert", "text_cpu"), ("lts_gpt2_wt103", "causal_text")]:
            cfg = compose("score", overrides=[*paths, f"space={space}", f"data={data}"])
            check_data(cfg, instantiate(cfg.space, _convert_="all"))
    assert not any(tmp_path.iterdir())  # nothing written


def test_metric_selection_and_where_mistakes_are_one_line(tmp_path):
    from omegaconf import OmegaConf

    from tfnas.schema import AnalyzeConfig, metric_names
    from tfnas.spaces.nasbench_nlp.space import NasBenchNLP
    from tfnas.tasks.score import check_metrics

    # a repeated name counts once, so [a, a] and [a] are one record
    assert metric_names(OmegaConf.create({"names": ["num_params", "snip", "num_params"]})) == ["num_params", "snip"]
    space = NasBenchNLP.__new__(NasBenchNLP)  # check_metrics reads only the family and the name
    space.name = "nasbench_nlp"
    for empty in ([], None):  # was an "ok" record with no scores
        with pytest.raises(ConfigError, match=r"^metrics.names is empty: name at least one metric"):
            check_metrics(OmegaConf.create({"metrics": {"names": empty}}), space)
    with pytest.raises(ConfigError, match=r"^where starts empty, so a key is added to it: \+where.paper_compat=true$"):
        check_overrides(AnalyzeConfig, ["where.paper_compat=true"])
    check_overrides(AnalyzeConfig, ["+where.paper_compat=true"])
