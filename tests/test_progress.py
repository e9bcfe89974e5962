"""Progress lines of sweeps and trainings: k of N, the rate and the time left (no timing is asserted)."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from hydra import compose, initialize_config_dir

import tfnas.hydra_support as hs
from tfnas.callbacks import TrainingProgress
from tfnas.tasks import progress

REPO = Path(__file__).resolve().parents[1]
#: A progress line as the README shows it.
LINE = re.compile(r"\[(\d+) of (\d+) done( \| shard \d+: \d+ of \d+)? \| (\d+\.\d+ arch/s|\d+\.\d+ s/arch|- arch/s), "
                  r"(\d+:\d\d:\d\d|\?) left\]")


def test_plan_jobs_expands_the_sweep_as_hydras_basic_sweeper():
    jobs = progress.plan_jobs(["arch=range(0,3)", "seed=0,1", "threads=1", "+shard_size=5"])
    assert len(jobs) == 6 and jobs[0] == {"arch": "0", "shard_size": "5"}
    assert sorted(j["arch"] for j in jobs) == ["0", "0", "1", "1", "2", "2"]
    assert progress.plan_jobs(["shard=range(0,2)", "shard_size=100"]) == [{"shard": "0", "shard_size": "100"},
                                                                        {"shard": "1", "shard_size": "100"}]


def test_tracker_counts_the_jobs_of_one_sweep_together(tmp_path):
    """Two jobs (as two processes would) append to the sweep's log; each line counts the whole sweep."""
    now = time.time()
    a = progress.Tracker(2, "shard 0", sweep_dir=tmp_path, sweep_total=10, started=now)
    b = progress.Tracker(2, "shard 1", sweep_dir=tmp_path, sweep_total=10, started=now)
    assert LINE.fullmatch(a.step(0, "ok"))
    assert b.step(2, "skipped").startswith("[2 of 10 done | shard 1: 1 of 2 | ")
    assert b.step(3, "claimed").startswith("[3 of 10 done | shard 1: 2 of 2 | ")
    assert a.step(1, "error").startswith("[4 of 10 done | shard 0: 2 of 2 | ")
    assert progress.read_log(tmp_path) == {"ok": 1, "error": 1, "skipped": 1, "claimed": 1}
    assert progress.summary(tmp_path, "scored") == ("4 architectures: 2 scored (1 ok, 1 error), 1 skipped (record "
                                                    "there), 1 claimed by another process")
    # outside a multirun: the job's own architectures
    alone = progress.Tracker(3, "shard 4")
    assert alone.step(12, "ok").startswith("[shard 4: 1 of 3 done | ")
    assert progress.Tracker(1).step(0, "skipped").startswith("[1 of 1 done | - arch/s, 0:00:00 left]")


def test_rate_counts_from_the_first_architecture_so_start_up_does_not_weigh(tmp_path, monkeypatch):
    clock = iter([1100.0, 1110.0, 1130.0])
    monkeypatch.setattr(progress.time, "time", lambda: next(clock))
    t = progress.Tracker(1, sweep_dir=tmp_path, sweep_total=10, started=1000.0)
    assert t.step(0, "ok") == "[1 of 10 done | 100.0 s/arch, 0:15:00 left]"  # start-up counted: nothing else yet
    assert t.step(1, "ok") == "[2 of 10 done | 0.10 arch/s, 0:01:20 left]"  # one more in 10 s
    assert t.step(2, "skipped") == "[3 of 10 done | 30.0 s/arch, 0:03:30 left]"  # a skip is done, not worked on


def test_rate_and_duration_formats():
    assert progress.format_rate(0.834) == "0.83 arch/s" and progress.format_rate(1 / 12) == "12.0 s/arch"
    assert progress.format_rate(0.0) == "- arch/s"
    assert progress.format_duration(3725) == "1:02:05" and progress.format_duration(2 * 86400 + 5) == "2 days, 0:00:05"
    assert progress.format_duration(float("inf")) == "?"


def test_batch_size_is_small_for_the_local_launcher_and_an_array_for_slurm():
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        sizes = {launcher: compose("score", overrides=[f"hydra/launcher={launcher}"],
                                   return_hydra_config=True).hydra.sweeper.max_batch_size
                 for launcher in ("basic", "slurm", "submitit_local", "ray_cluster")}
        train = compose("train", return_hydra_config=True).hydra.sweeper.max_batch_size
    assert sizes == {"basic": hs.BATCH_BASIC, "slurm": 1000, "submitit_local": 1000, "ray_cluster": 1000}
    assert train == hs.BATCH_BASIC
    assert hs.max_batch_size({"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
                              "n_jobs": -1}, cores=8) == 80


def test_sweep_lines_say_k_of_n_rate_and_time_left(synthetic_data_dir, tmp_path):
    """A real multirun of shards (one beyond the synthetic space's 3 architectures): every line counts the sweep."""
    cmd = [sys.executable, str(REPO / "score.py"), "-m", "shard=range(0,3)", "shard_size=2", "logger=none",
           "threads=1", "metrics.names=[num_params]", "space.model.emsize=8", "space.model.nhid=8",
           f"paths.data_dir={synthetic_data_dir}", f"paths.results_dir={tmp_path / 'results'}",
           f"paths.log_dir={tmp_path / 'logs'}"]
    run = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, PYTHONUNBUFFERED="1"))
    assert run.returncode == 0, run.stdout + run.stderr
    lines = [line for line in (run.stdout + run.stderr).splitlines() if "[tfnas.score]" in line and "] arch " in line]
    found = [LINE.search(line) for line in lines]
    assert len(lines) == 3 and all(found), lines
    assert [(m.group(1), m.group(2), m.group(3)) for m in found] == [
        ("1", "3", " | shard 0: 1 of 2"), ("2", "3", " | shard 0: 2 of 2"), ("3", "3", " | shard 1: 1 of 1")]
    assert "this sweep: 3 architectures: 3 scored (3 ok, 0 error), 0 skipped" in run.stdout + run.stderr
    (sweep_dir,) = (tmp_path / "logs" / "score" / "multirun").iterdir()
    assert progress.read_plan(sweep_dir)["jobs"] == [{"shard": str(k), "shard_size": "2"} for k in range(3)]


class _Tiny(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.lin, self.history = torch.nn.Linear(2, 1), []

    def training_step(self, batch, batch_idx):
        return self.lin(batch[0]).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        pass

    def on_validation_epoch_end(self):
        if not self.trainer.sanity_checking:
            self.history.append({"epoch": self.current_epoch + 1, "train_loss": 1.5, "val_loss": 2.5, "seconds": 0.1})

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.parametrize("limits, expected", [
    ({"max_epochs": 3}, ["arch 7: 3 epoch(s) of 4 steps", "[epoch 1 of 3 | ", "[epoch 3 of 3 | "]),
    ({"max_steps": 8, "val_check_interval": 4}, ["arch 7: 8 steps (4 per pass over the data)", "[step 4 of 8 | ",
                                                 "[step 8 of 8 | "]),
])
def test_training_progress_lines(limits, expected, caplog):
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(8, 2)), batch_size=2)
    trainer = pl.Trainer(**limits, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         callbacks=[TrainingProgress("arch 7", every_seconds=1e9)])
    with caplog.at_level(logging.INFO, logger="tfnas.train"):
        trainer.fit(_Tiny(), train_dataloaders=data, val_dataloaders=data)
    messages = [r.message for r in caplog.records if r.name == "tfnas.train"]
    assert messages[0] == expected[0]
    evals = messages[1:]
    assert len(evals) == (3 if "max_epochs" in limits else 2)
    assert evals[0].startswith(expected[1]) and evals[-1].startswith(expected[2])
    assert all(re.search(r"\| \d+(\.\d+)? s/(epoch|step), \d+:\d\d:\d\d left\] arch 7: train_loss=1.5000 "
                         r"val_loss=2.5000$", m) for m in evals), evals
    assert evals[-1].split(", ")[1].startswith("0:00:00 left")
