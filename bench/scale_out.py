"""Scale-out measurements of ``score.py`` sweeps through Hydra launchers.

Three checks, each on the real WikiText-2 NAS-Bench-NLP logs and PTB:

- ``launchers``: the same sweep of N architectures with the basic launcher
  (one job after another in one process, ``threads`` = every core) and with
  ``hydra/launcher=joblib`` (one job per core, one thread each); each run
  writes to a fresh results folder so nothing is skipped, and the runs are
  interleaved (basic, joblib, joblib, basic, ...) because the machine may be
  shared. Prints wall and CPU times (of score.py and the workers it waited
  for), record counts and the load average around each run.
- ``shards``: ``hydra/launcher=submitit_local`` over S shards of M
  architectures; checks that every record exists exactly once.
- ``resume``: a joblib sweep killed (SIGKILL to its whole process group)
  after K records, completed by ``python -m tfnas.sweep missing``; checks
  that the records written before the kill are left untouched and that
  every architecture ends with exactly one record.

    python bench/scale_out.py launchers --archs 40 --repeats 2
    python bench/scale_out.py launchers --archs 40 --variants basic1,joblib   # control: one thread
    python bench/scale_out.py shards --shards 4 --shard-size 10
    python bench/scale_out.py resume --archs 12 --kill-after 4

Metrics default to ``hidden_covariance,num_params`` to keep the runs
affordable on a small machine (``--metrics`` changes it).
"""

from __future__ import annotations

import argparse
import os
import resource
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable


def load() -> str:
    """The 1/5/15-minute load averages, as /proc/loadavg gives them."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def records(results_dir: Path, space: str = "nasbench_nlp") -> Counter:
    """How many record files each architecture index has under ``results_dir/space``."""
    return Counter(int(p.name.split("_")[1]) for p in (results_dir / space).glob("arch_*.json"))


def score_cmd(overrides: list[str]) -> list[str]:
    """``python score.py -m <overrides>`` as an argument list."""
    return [PY, str(REPO / "score.py"), "-m", *overrides]


def _child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run(cmd: list[str], log: Path) -> tuple[float, float]:
    """Run ``cmd`` with its output in ``log``.

    Returns:
        (wall seconds, CPU seconds of the command and every process it waited for).

    Raises:
        RuntimeError: the command failed (names the log).
    """
    t0, c0 = time.perf_counter(), _child_cpu()
    with open(log, "w") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=REPO).returncode
    dt, cpu = time.perf_counter() - t0, _child_cpu() - c0
    if rc != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed with exit code {rc}; see {log}")
    return dt, cpu


def common(args: argparse.Namespace, out: Path) -> list[str]:
    """Overrides every run shares: the metric set, no TensorBoard, logs under ``out``."""
    return [f"metrics.names=[{args.metrics}]", "logger=none", f"paths.log_dir={out / 'logs'}"]


#: Launcher variants of the ``launchers`` check: name -> extra score.py overrides.
VARIANTS = {
    "basic": [],  # one job after another, torch threads = every core
    "joblib": ["hydra/launcher=joblib"],  # one job per core, one thread each
    "basic1": ["threads=1"],  # control: one job after another, one thread
}


def bench_launchers(args: argparse.Namespace, out: Path) -> None:
    """The same sweep with each launcher variant, interleaved; prints wall and CPU times.

    Raises:
        SystemExit: a run did not leave exactly one record per architecture.
    """
    arch = f"arch=range(0,{args.archs})"
    names = args.variants.split(",")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    order = []
    for r in range(args.repeats):  # a, b, b, a, ...: drifting load hits every variant alike
        order += [(n, r) for n in (names if r % 2 == 0 else names[::-1])]
    times: dict[str, list[float]] = {n: [] for n in names}
    for name, r in order:
        res = out / f"{name}_{r}"
        launcher = VARIANTS[name]
        before = load()
        dt, cpu = run(score_cmd([*launcher, arch, f"paths.results_dir={res}", *common(args, out)]), out / f"{name}_{r}.log")
        n = records(res)
        times[name].append(dt)
        print(
            f"{name:7s} run {r}: {dt:7.1f} s wall, {cpu:7.1f} s CPU  {sum(n.values())} records ({len(n)} archs)  "
            f"load {before} -> {load()}",
            flush=True,
        )
        if sorted(n) != list(range(args.archs)) or max(n.values()) != 1:
            raise SystemExit(f"{name} run {r}: expected one record for each of {args.archs} architectures, got {dict(n)}")
    print(f"\n{args.archs} architectures, metrics {args.metrics}, {os.cpu_count()} cores:")
    for n in names:
        print(f"  {n:7s} {' '.join(VARIANTS[n]) or '(default)':22s} best {min(times[n]):7.1f} s  runs "
              + ", ".join(f"{t:.1f}" for t in times[n]))
    if "basic" in times and "joblib" in times:
        print(f"  speed-up of joblib over basic (best runs): {min(times['basic']) / min(times['joblib']):.2f}x")


def bench_shards(args: argparse.Namespace, out: Path) -> None:
    """A sharded submitit_local sweep; checks one record per architecture and the combined table.

    Raises:
        SystemExit: missing or duplicate records, or no records.csv.
    """
    res = out / "shards"
    before = load()
    cmd = score_cmd(
        [
            "hydra/launcher=submitit_local",
            f"shard=range(0,{args.shards})",
            f"shard_size={args.shard_size}",
            f"paths.results_dir={res}",
            *common(args, out),
        ]
    )
    dt, _ = run(cmd, out / "shards.log")
    n = records(res)
    want = list(range(args.shards * args.shard_size))
    ok = sorted(n) == want and set(n.values()) == {1}
    table = (res / "nasbench_nlp" / "records.csv").is_file()
    print(
        f"submitit_local {args.shards} shards x {args.shard_size}: {dt:.1f} s, {sum(n.values())} records, "
        f"each architecture once: {ok}, records.csv written: {table}; load {before} -> {load()}"
    )
    if not ok or not table:
        raise SystemExit(f"missing or duplicate records: {dict(n)}")


def bench_resume(args: argparse.Namespace, out: Path) -> None:
    """Kill a joblib sweep mid-way, complete it with ``tfnas.sweep missing``, check the records.

    Raises:
        SystemExit: the sweep ended before the kill, the missing list is wrong,
            or the final records are not exactly one per architecture.
    """
    res = out / "resume"
    sweep = [f"arch=range(0,{args.archs})", f"metrics.names=[{args.metrics}]", "logger=none"]
    cmd = score_cmd(["hydra/launcher=joblib", *sweep, f"paths.results_dir={res}", f"paths.log_dir={out / 'logs'}"])
    with open(out / "resume_killed.log", "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True)
    t0 = time.perf_counter()
    while sum(records(res).values()) < args.kill_after and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its joblib workers, mid-job
    proc.wait()
    before = {p.name: p.stat().st_mtime_ns for p in (res / "nasbench_nlp").glob("arch_*.json")}
    tmp = list((res / "nasbench_nlp").glob(".arch_*.tmp"))
    print(f"killed after {time.perf_counter() - t0:.1f} s: {len(before)} records, {len(tmp)} temporary files")
    if len(before) >= args.archs:
        raise SystemExit("the sweep finished before it was killed: raise --archs or lower --kill-after")

    found = subprocess.run(
        [PY, "-m", "tfnas.sweep", "missing", *sweep, f"paths.results_dir={res}"],
        capture_output=True, text=True, cwd=REPO, check=True,
    )
    override = found.stdout.split()
    listed = [int(i) for i in override[0].split("=", 1)[1].split(",")] if override else []
    expect = sorted(set(range(args.archs)) - {int(n.split("_")[1]) for n in before})
    print(f"tfnas.sweep missing: {found.stderr.strip()}\n  -> {' '.join(override)}")
    if listed != expect:
        raise SystemExit(f"missing listed {listed}, expected {expect}")

    dt, _ = run(
        score_cmd(["hydra/launcher=joblib", *override, *sweep[1:], f"paths.results_dir={res}", f"paths.log_dir={out / 'logs'}"]),
        out / "resume_rest.log",
    )
    n = records(res)
    after = {p.name: p.stat().st_mtime_ns for p in (res / "nasbench_nlp").glob("arch_*.json")}
    untouched = all(after.get(k) == v for k, v in before.items())
    ok = sorted(n) == list(range(args.archs)) and set(n.values()) == {1}
    again = subprocess.run(
        [PY, "-m", "tfnas.sweep", "missing", *sweep, f"paths.results_dir={res}"],
        capture_output=True, text=True, cwd=REPO, check=True,
    )
    print(
        f"resumed {len(listed)} architectures in {dt:.1f} s: {sum(n.values())} records for {args.archs} archs, "
        f"each once: {ok}; records from before the kill untouched: {untouched}; "
        f"missing afterwards: {again.stdout.strip() or 'none'}"
    )
    if not (ok and untouched and not again.stdout.strip()):
        raise SystemExit("resume check failed")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("check", choices=["launchers", "shards", "resume"])
    ap.add_argument("--archs", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=2, help="launchers: runs of each launcher, interleaved")
    ap.add_argument("--variants", default="basic,joblib", help=f"launchers: comma-separated, of {list(VARIANTS)}")
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--shard-size", type=int, default=10)
    ap.add_argument("--kill-after", type=int, default=4, help="resume: records written before the kill")
    ap.add_argument("--metrics", default="hidden_covariance,num_params", help="comma-separated metric families")
    ap.add_argument("--out", default=None, help="work folder (default: a new temporary folder)")
    args = ap.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="tfnas_scale_out_"))
    out.mkdir(parents=True, exist_ok=True)
    print(f"work folder {out}; load {load()}", flush=True)
    {"launchers": bench_launchers, "shards": bench_shards, "resume": bench_resume}[args.check](args, out)


if __name__ == "__main__":
    main()
