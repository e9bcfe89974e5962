"""Concurrent sweeps into one results folder: per-record claims (tfnas.results.claim) and the job loop's use of them."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tfnas import results
from tfnas.tasks import loop

REPO = Path(__file__).resolve().parents[1]
CHEAP = "metrics.names=[hidden_covariance,num_params]"


class FakeSpace:
    name, family = "fake_space", "fake"

    def __len__(self) -> int:
        return 4


class CountingJob(loop.ArchitectureJob):
    verb = "test"

    def __init__(self, cfg):
        super().__init__(cfg, FakeSpace())
        self.ran = []

    def prepare(self, indices):
        return {"setting": 1}

    def run_one(self, index, settings, chash):
        self.ran.append(index)
        return results.Record(space=self.space.name, arch=index, benchmark_id=str(index), seed=0, config_hash=chash)


def _cfg(tmp_path):
    return OmegaConf.create({"arch": 0, "shard": 0, "shard_size": 4, "overwrite": False, "results_dir": str(tmp_path)})


def _path(tmp_path, arch):
    return results.record_path(tmp_path, "fake_space", arch, results.config_hash({"setting": 1, "arch": arch}))


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


HOLDER = """
import sys, time
from tfnas import results
with results.claim(sys.argv[1]) as c:
    print("held" if c.held else "not held", flush=True)
    time.sleep(600)
"""


@pytest.fixture
def live_holder():
    """Start a process that holds the claim of a record path until killed; yields (start, Popen list)."""
    procs = []

    def start(path: Path) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True,
                                env=dict(os.environ, PYTHONPATH=str(REPO)))
        assert proc.stdout.readline().strip() == "held"
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_claim_is_exclusive_names_its_holder_and_is_removed_after(tmp_path):
    path = tmp_path / "space" / "arch_000001_abc.json"
    with results.claim(path) as mine:
        assert mine.held
        text = results.claim_path(path).read_text()
        assert text.startswith(f"pid {os.getpid()} on host ") and " since " in text
        with results.claim(path) as other:  # a second claim, as another process would try it
            assert not other.held and other.holder == text.strip()
    assert not results.claim_path(path).exists()
    with results.claim(path) as again:
        assert again.held


def test_stale_claim_of_a_dead_process_is_taken_over(tmp_path):
    pid = _dead_pid()
    stale = results.claim_path(_path(tmp_path, 1))
    stale.parent.mkdir(parents=True)
    stale.write_text(f"pid {pid} on host {os.uname().nodename} since 2026-01-01T00:00:00Z\n")
    job = CountingJob(_cfg(tmp_path))
    out = loop.run_job(job)
    assert job.ran == [0, 1, 2, 3] and out.claimed == 0 and out.ok == 4
    assert not stale.exists() and _path(tmp_path, 1).is_file()


def test_live_claim_is_respected_then_taken_over_after_kill_minus_9(tmp_path, live_holder, caplog):
    holder = live_holder(_path(tmp_path, 2))
    job = CountingJob(_cfg(tmp_path))
    with caplog.at_level(logging.INFO, logger="tfnas"):
        out = loop.run_job(job)
    assert job.ran == [0, 1, 3] and out.counts()["claimed"] == 1 and not _path(tmp_path, 2).exists()
    line = next(r.message for r in caplog.records if "claimed by" in r.message)
    assert f"arch 2: claimed by pid {holder.pid} on host" in line and line.endswith("skipped")
    assert "done: 3 ok, 0 error, 0 skipped (already done), 1 claimed by another process" in caplog.text
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert results.claim_path(_path(tmp_path, 2)).exists()  # left behind by the killed process: stale
    rerun = CountingJob(_cfg(tmp_path))
    out = loop.run_job(rerun)
    assert rerun.ran == [2] and out.counts()["skipped"] == 3 and _path(tmp_path, 2).is_file()
    assert not results.claim_path(_path(tmp_path, 2)).exists()


def test_record_finished_by_the_last_holder_is_not_run_again(tmp_path, monkeypatch):
    """The record appears between the resume check and the claim (its holder finished just then): skipped."""
    job = CountingJob(_cfg(tmp_path))
    real_claim = results.claim

    def claim_after_other_finished(path):
        if path == _path(tmp_path, 1) and not path.exists():
            results.save(results.Record(space="fake_space", arch=1, benchmark_id="1", seed=0,
                                        config_hash=path.stem.rsplit("_", 1)[1]), tmp_path)
        return real_claim(path)

    monkeypatch.setattr(results, "claim", claim_after_other_finished)
    out = loop.run_job(job)
    assert job.ran == [0, 2, 3] and out.skipped == 1 and out.claimed == 0


@pytest.mark.slow
def test_two_identical_sweeps_at_once_score_each_architecture_once(data_dir, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "results"
    n = 6
    procs = []
    for k in range(2):
        cmd = [sys.executable, str(REPO / "score.py"), "-m", f"arch=range(0,{n})", CHEAP, "threads=1",
               f"paths.data_dir={data_dir}", f"paths.results_dir={out}", f"paths.log_dir={tmp_path / f'logs{k}'}",
               f"space.benchmark={data_dir}/nasbench_nlp/recepies_example.json"]
        procs.append(subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                      env=dict(os.environ, PYTHONUNBUFFERED="1")))
    logs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    recs = [results.load(p) for p in results.iter_record_files(out)]
    assert sorted(r["arch"] for r in recs) == list(range(n)) and all(r["status"] == "ok" for r in recs)
    assert not list((out / "nasbench_nlp").glob("*.claim"))
    # Every architecture scored by exactly one of the two sweeps; the other skipped it (record or claim).
    scored = [[int(line.split("] arch ")[1].split()[0]) for line in log.splitlines() if ") ok " in line]
              for log in logs]
    assert sorted(scored[0] + scored[1]) == list(range(n)), logs
    for log, mine in zip(logs, scored):
        summary = next(line for line in log.splitlines() if "this sweep:" in line)
        assert f"{n} architectures: {len(mine)} scored ({len(mine)} ok, 0 error)" in summary
    # One TensorBoard point per architecture, whichever sweep scored it.
    steps = []
    for events in (out / "tensorboard").rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events))
        acc.Reload()
        if "score/num_params" in acc.Tags()["scalars"]:
            steps += [e.step for e in acc.Scalars("score/num_params")]
    assert sorted(steps) == list(range(n))
