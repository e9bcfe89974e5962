"""The job loop shared by score.py and train.py: selection, resume, retry, saving, counts (synthetic data)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import tfnas.hydra_support  # noqa: F401  (resolvers)
from tfnas import results
from tfnas.schema import ConfigError
from tfnas.tasks import loop
from tfnas.tasks.score import score

CONF = Path(__file__).resolve().parents[1] / "conf"


class FakeSpace:
    name, family = "fake_space", "fake"

    def __len__(self) -> int:
        return 5


class CountingJob(loop.ArchitectureJob):
    """Records which architectures it ran; architecture 2 fails; ``finished`` says whether old records count."""

    verb = "test"

    def __init__(self, cfg, finished=lambda old: True):
        super().__init__(cfg, FakeSpace())
        self.ran, self.prepared, self.finished = [], [], finished

    def prepare(self, indices):
        self.prepared.append(list(indices))
        return {"setting": 1}

    def run_one(self, index, settings, chash):
        self.ran.append(index)
        rec = results.Record(space=self.space.name, arch=index, benchmark_id=str(index), seed=0, config_hash=chash,
                             settings=dict(settings, arch=index))
        if index == 2:
            rec.status, rec.error = "error", "ValueError: boom"
        return rec

    def is_finished(self, old):
        return self.finished(old)


def _cfg(tmp_path, **kw):
    return OmegaConf.create({"arch": 0, "shard": None, "shard_size": 4, "overwrite": False,
                             "results_dir": str(tmp_path), **kw})


def test_shard_runs_its_block_clipped_saves_and_resumes(tmp_path):
    job = CountingJob(_cfg(tmp_path, shard=1, shard_size=4))
    out = loop.run_job(job)
    assert job.prepared == [[4]] and job.ran == [4] and out.counts() == {"ok": 1, "error": 0, "skipped": 0,
                                                                            "claimed": 0, "out_of_range": 0}
    job = CountingJob(_cfg(tmp_path, shard=0))
    out = loop.run_job(job)
    assert job.ran == [0, 1, 2, 3] and (out.ok, out.error) == (3, 1)
    paths = [p for p, _ in out.records]
    assert all(p.is_file() for p in paths) and results.load(paths[2])["error"] == "ValueError: boom"
    assert paths[0] == results.record_path(tmp_path, "fake_space", 0, results.config_hash({"setting": 1, "arch": 0}))
    # rerun: every record is there; by default an error record is finished too
    again = CountingJob(_cfg(tmp_path, shard=0))
    assert loop.run_job(again).skipped == 4 and again.ran == []
    # a task that retries error records runs only architecture 2 again
    retry = CountingJob(_cfg(tmp_path, shard=0), finished=lambda old: old["status"] == "ok")
    out = loop.run_job(retry)
    assert retry.ran == [2] and (out.skipped, out.error) == (3, 1)
    assert out.counts_with_last_record()["record"] == str(paths[3])
    # overwrite runs everything
    over = CountingJob(_cfg(tmp_path, shard=0, overwrite=True))
    assert loop.run_job(over).counts()["ok"] == 3 and over.ran == [0, 1, 2, 3]


def test_a_skipped_error_record_is_a_warning_that_says_how_to_run_it_again(tmp_path, caplog):
    loop.run_job(CountingJob(_cfg(tmp_path, shard=0)))  # architecture 2 fails
    caplog.clear()
    with caplog.at_level("INFO", logger="tfnas"):
        assert loop.run_job(CountingJob(_cfg(tmp_path, shard=0))).skipped == 4
    skips = {int(re.search(r"arch (\d+): record", r.message).group(1)): r for r in caplog.records
             if "skipped" in r.message and "arch " in r.message}
    assert sorted(skips) == [0, 1, 2, 3]
    for index in (0, 1, 3):
        assert skips[index].levelno == logging.INFO and skips[index].message.endswith("exists, skipped")
    error = skips[2]
    assert error.levelno == logging.WARNING
    assert error.message.endswith("exists as an error record (ValueError: boom), skipped: overwrite=true runs it "
                                  "again (a sweep's: python -m tfnas.sweep missing --retry-errors lists them)")


def test_out_of_range_job_prepares_nothing_and_warns_once(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(loop, "_warned_out_of_range", False)
    with caplog.at_level("WARNING", logger="tfnas"):
        for arch in (5, 6):
            job = CountingJob(_cfg(tmp_path, arch=arch))
            out = loop.run_job(job)
            assert out.counts_with_last_record() == {"ok": 0, "error": 0, "skipped": 0, "claimed": 0,
                                                     "out_of_range": 1, "record": None, "truth": {}}
            assert job.prepared == [] and job.ran == []
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "arch=5 is beyond the space: fake_space has 5 architectures" in warnings[0].message
    assert "nothing to test" in warnings[0].message


@pytest.mark.parametrize("overrides, message", [
    ({"arch": -1}, "arch must be an integer >= 0, got -1"),
    ({"arch": "abc"}, "arch must be an integer >= 0, got abc"),
    ({"arch": 1.5}, "arch must be an integer >= 0, got 1.5"),
    ({"shard": -2}, "shard must be null or an integer >= 0, got -2"),
    ({"shard": 0, "shard_size": 0}, "shard_size must be an integer >= 1, got 0"),
])
def test_wrong_selection_fails_before_any_work(tmp_path, overrides, message):
    job = CountingJob(_cfg(tmp_path, **overrides))
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        loop.run_job(job)
    assert job.prepared == []


def test_resume_checkpoint_and_run_dir(tmp_path):
    folder = tmp_path / "run"
    cfg = _cfg(tmp_path, resume=True, ckpt_path=None)
    assert loop.resume_checkpoint(cfg, folder) is None
    folder.mkdir()
    (folder / "last.ckpt").write_bytes(b"x")
    assert loop.resume_checkpoint(cfg, folder) == str(folder / "last.ckpt")
    assert loop.resume_checkpoint(_cfg(tmp_path, resume=False), folder) is None
    assert loop.resume_checkpoint(_cfg(tmp_path, overwrite=True), folder) is None
    given = tmp_path / "given.ckpt"
    with pytest.raises(FileNotFoundError, match="ckpt_path=.*given.ckpt: no such checkpoint file"):
        loop.resume_checkpoint(_cfg(tmp_path, ckpt_path=str(given)), folder)
    given.write_bytes(b"y")
    assert loop.resume_checkpoint(_cfg(tmp_path, ckpt_path=str(given)), folder) == str(given)
    assert loop.resume_checkpoint(_cfg(tmp_path, ckpt_path=str(given)), folder, explicit=False) == str(folder / "last.ckpt")
    assert loop.run_dir(cfg, "sp", 7, "abc") == tmp_path / "checkpoints" / "sp" / "arch_000007_abc"
    with_dir = OmegaConf.merge(cfg, {"checkpoint": {"dir": str(tmp_path / "ck")}})
    assert loop.run_dir(with_dir, "sp", 7, "abc") == tmp_path / "ck" / "sp" / "arch_000007_abc"


def test_result_trainer_keys_per_family():
    t = {"_target_": "lightning.pytorch.Trainer", "max_epochs": 3, "precision": "bf16-mixed", "devices": 2}
    assert loop.trainer_settings(t, "rnn") == {"max_epochs": 3, "max_steps": None, "limit_train_batches": None,
                                               "limit_val_batches": None, "precision": "bf16-mixed"}
    assert loop.trainer_settings(t, "bert") == {"precision": "bf16-mixed", "gradient_clip_val": None,
                                                "accumulate_grad_batches": None}


def test_score_py_end_to_end_on_synthetic_data(synthetic_data_dir, tmp_path):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("score", overrides=[f"paths.data_dir={synthetic_data_dir}", f"paths.results_dir={tmp_path}",
                                          "metrics.names=[num_params,hidden_covariance]", "logger=none", "threads=1",
                                          "space.model.emsize=8", "space.model.nhid=8", "shard=0", "shard_size=10"])
    assert score(cfg) == {"ok": 3, "error": 0, "skipped": 0, "claimed": 0, "out_of_range": 0}
    recs = sorted((results.load(p) for p in results.iter_record_files(tmp_path)), key=lambda r: r["arch"])
    assert [r["benchmark_id"] for r in recs] == ["1000000", "1000001", "1000002"]
    assert all(r["truth"]["status"] == "OK" and r["scores"]["num_params"] > 0 for r in recs)
    assert score(cfg) == {"ok": 0, "error": 0, "skipped": 3, "claimed": 0, "out_of_range": 0}
