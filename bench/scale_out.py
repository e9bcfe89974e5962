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
- ``ray``: starts a local Ray head on 127.0.0.1 (``ray start --head
  --block``, its own temporary folder, ``--ray-cpus`` CPUs), runs a sweep of
  N architectures through ``hydra/launcher=ray_cluster`` in shards of
  ``--shard-size``, SIGKILLs one Ray worker (a ``ray::_run_job`` process)
  once K records exist, lets the sweep end (Ray retries a task whose worker
  died), reruns the same command, and checks one ``ok`` record per
  architecture. Needs the ``ray`` extra (``pip install -e '.[ray]'``).
  The head and every process it started are stopped at the end (by process
  group). Slow (Python, torch and a Ray worker start per task): not a test.
- ``whole-space``: hidden covariance of N generated NAS-Bench-NLP cells
  (the benchmark's generator, ``intermediate_vertices=13``, T = 1, 2, 3
  cycled) on every core (``hydra/launcher=joblib``, one thread per job, in
  shards), projected to the 14,322 cells of the PTB benchmark from the
  measured wall time, and from the CPU time for an idle machine.

    python bench/scale_out.py launchers --archs 40 --repeats 2
    python bench/scale_out.py launchers --archs 40 --variants basic1,joblib   # control: one thread
    python bench/scale_out.py shards --shards 4 --shard-size 10
    python bench/scale_out.py resume --archs 12 --kill-after 4
    python bench/scale_out.py ray --archs 40 --shard-size 5 --kill-after 8
    python bench/scale_out.py whole-space --archs 2000 --shard-size 50

Metrics default to ``hidden_covariance,num_params`` to keep the runs
affordable on a small machine (``--metrics`` changes it).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import shutil
import signal
import socket
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


def _children(pid: int) -> list[int]:
    """Every descendant process of ``pid`` (from /proc), depth first."""
    kids: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
        kids.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], list(kids.get(pid, []))
    while todo:
        p = todo.pop()
        out.append(p)
        todo += kids.get(p, [])
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, head: subprocess.Popen, timeout: float = 180.0) -> None:
    """Wait until something listens on 127.0.0.1:``port``.

    Raises:
        RuntimeError: the head exited first, or nothing listened within ``timeout`` seconds.
    """
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if head.poll() is not None:
            raise RuntimeError(f"ray start exited with code {head.returncode} before its GCS listened")
        with socket.socket() as s:
            s.settimeout(1.0)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise RuntimeError(f"no Ray GCS on 127.0.0.1:{port} after {timeout:.0f} s")


def _stop_group(proc: subprocess.Popen, grace: float = 30.0) -> None:
    """SIGTERM the process group of ``proc`` (started with a new session), SIGKILL what is left after ``grace`` s."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < grace:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.5)
    else:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def statuses(results_dir: Path, space: str = "nasbench_nlp") -> Counter:
    """``status`` of every record under ``results_dir/space``."""
    return Counter(json.loads(p.read_text())["status"] for p in (results_dir / space).glob("arch_*.json"))


def bench_ray(args: argparse.Namespace, out: Path) -> None:
    """A Ray sweep on a local head, one worker killed mid-sweep, rerun; checks one record per architecture.

    Raises:
        SystemExit: the ``ray`` extra is missing, no worker could be killed,
            or the records after the rerun are not one ``ok`` record per architecture.
    """
    ray_exe = Path(PY).parent / "ray"
    if not ray_exe.is_file():
        raise SystemExit(f"{ray_exe} not found: pip install -e '.[ray]' (hydra-ray-launcher and ray)")
    if args.archs % args.shard_size:
        raise SystemExit(f"--archs {args.archs} is not a multiple of --shard-size {args.shard_size}")
    os.environ["RAY_DEDUP_LOGS"] = "0"  # every worker's "done: ..." line reaches the sweep's log
    version = subprocess.run([PY, "-c", "import ray, importlib.metadata as m; print(ray.__version__, "
                              "m.version('hydra-ray-launcher'))"], capture_output=True, text=True, check=True)
    ray_v, plugin_v = version.stdout.split()
    port = _free_port()
    # Ray's session folder holds Unix sockets, whose paths must stay short: a folder of its own in /tmp.
    ray_tmp = Path(tempfile.mkdtemp(prefix="tfnas_ray_"))
    head_cmd = [str(ray_exe), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
                f"--num-cpus={args.ray_cpus}", "--include-dashboard=false", f"--temp-dir={ray_tmp}",
                "--disable-usage-stats"]
    head_log = open(out / "ray_head.log", "w")
    t0 = time.perf_counter()
    head = subprocess.Popen(head_cmd, stdout=head_log, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True)
    try:
        _wait_port(port, head)
        print(f"ray {ray_v}, hydra-ray-launcher {plugin_v}: head on 127.0.0.1:{port} with {args.ray_cpus} CPUs "
              f"up in {time.perf_counter() - t0:.1f} s (pid {head.pid})", flush=True)
        res = out / "ray"
        data_dir = os.environ.get("TFNAS_DATA_DIR") or str(REPO.parent / "shared" / "data")
        cmd = score_cmd([
            "hydra/launcher=ray_cluster", f"hydra.launcher.ray.init.address=127.0.0.1:{port}",
            f"shard=range(0,{args.archs // args.shard_size})", f"shard_size={args.shard_size}",
            # Ray workers see the environment of `ray start`, not ours: the data folder goes on the command line.
            f"paths.data_dir={Path(data_dir).absolute()}", f"paths.results_dir={res}", *common(args, out),
        ])
        print(f"sweep: {shlex.join(cmd[1:])}", flush=True)

        # 1. the sweep, with one worker killed once --kill-after records exist
        log1 = out / "ray_sweep_killed.log"
        t1 = time.perf_counter()
        with open(log1, "w") as f:
            sweep = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True)
        victim, at = None, 0
        while sweep.poll() is None:
            at = sum(records(res).values())
            if victim is None and at >= args.kill_after:
                workers = [p for p in _children(head.pid) if _cmdline(p).startswith("ray::_run_job")]
                if workers:
                    victim = workers[0]
                    os.kill(victim, signal.SIGKILL)
                    print(f"killed Ray worker pid {victim} ({len(workers)} running) at {at} records, "
                          f"{time.perf_counter() - t1:.1f} s into the sweep", flush=True)
            time.sleep(0.2)
        dt1 = time.perf_counter() - t1
        text = log1.read_text(errors="replace")
        crash = [w for w in ("WorkerCrashedError", "SYSTEM_ERROR", "worker died", "Worker unexpectedly exits")
                 if w.lower() in text.lower()]
        n1 = records(res)
        print(f"first run: exit code {sweep.returncode} after {dt1:.1f} s, {sum(n1.values())} records "
              f"({len(n1)} archs); worker death in its log: {', '.join(crash) or 'not mentioned'}; "
              f"{_ray_retries(text)}", flush=True)
        if victim is None:
            raise SystemExit(f"no Ray worker was killed (the sweep ended with {sum(n1.values())} records before "
                             f"--kill-after {args.kill_after}); see {log1}")

        # 2. the same command again: skips what exists, scores what is missing
        before = {p.name: p.stat().st_mtime_ns for p in (res / "nasbench_nlp").glob("arch_*.json")}
        dt2, _ = run(cmd, out / "ray_sweep_rerun.log")
        rerun = (out / "ray_sweep_rerun.log").read_text(errors="replace")
        skipped = sum(int(x) for x in _grep_counts(rerun, "skipped"))
        n2 = records(res)
        after = {p.name: p.stat().st_mtime_ns for p in (res / "nasbench_nlp").glob("arch_*.json")}
        untouched = all(after.get(k) == v for k, v in before.items())
        st = statuses(res)
        tmp = list((res / "nasbench_nlp").glob(".arch_*.tmp"))
        ok = sorted(n2) == list(range(args.archs)) and set(n2.values()) == {1} and st == Counter({"ok": args.archs})
        table = (res / "nasbench_nlp" / "records.csv").is_file()
        print(f"rerun: exit code 0 after {dt2:.1f} s, {skipped} architectures skipped (record present), "
              f"{args.archs - len(before)} scored; records from the first run untouched: {untouched}; "
              f"{_ray_retries(rerun)}")
        print(f"result: {sum(n2.values())} records for {args.archs} architectures, one ok record each: {ok} "
              f"(statuses {dict(st)}), temporary files left: {len(tmp)}, records.csv written: {table}")
        print(f"{args.archs} architectures in {args.archs // args.shard_size} Ray tasks of {args.shard_size}, "
              f"metrics {args.metrics}, load {load()}")
        if not (ok and untouched and table):
            raise SystemExit("ray check failed")
    finally:
        _stop_group(head)
        head_log.close()
        shutil.rmtree(ray_tmp, ignore_errors=True)


def _ray_retries(text: str) -> str:
    """What a sweep's log says Ray retried: tasks whose worker died, and tasks its memory monitor killed."""
    died = text.count("so the task will be retried")
    oom = text.count("failed due to oom")
    return f"Ray retried {died - oom} task(s) after a worker died and {oom} after its OOM monitor killed workers"


def _grep_counts(text: str, word: str) -> list[str]:
    """The numbers before ``word`` on score.py's ``done:`` lines (``done: 1 ok, 0 error, 4 skipped ...``)."""
    import re

    return re.findall(rf"done: .*?(\d+) {word}", text)


#: Cells of the NAS-Bench-NLP PTB benchmark (train_logs_single_run.zip).
PTB_BENCHMARK_CELLS = 14_322


def bench_whole_space(args: argparse.Namespace, out: Path) -> None:
    """Hidden covariance of ``--archs`` generated cells on every core; projected hours for the PTB benchmark.

    Raises:
        SystemExit: a record is missing or not ``ok``.
    """
    from tfnas.tasks.runtime import available_cores

    cores = available_cores()
    res = out / "whole_space"
    shards = -(-args.archs // args.shard_size)
    cmd = score_cmd([
        "hydra/launcher=joblib", f"shard=range(0,{shards})", f"shard_size={args.shard_size}",
        "space.benchmark=null", f"space.generate={args.archs}", "+space.intermediate_vertices=13",
        f"paths.results_dir={res}", *common(args, out),
    ])
    print(f"{shlex.join(cmd[1:])}\n{cores} cores, load before {load()}", flush=True)
    dt, cpu = run(cmd, out / "whole_space.log")
    n, st = records(res), statuses(res)
    recs = [json.loads(p.read_text()) for p in (res / "nasbench_nlp").glob("arch_*.json")]
    score_s = sorted(r["extra"].get("score_seconds", float("nan")) for r in recs)
    arch_s = sorted(r["seconds"] for r in recs)
    ts = Counter(r["settings"]["space_cfg"].get("intermediate_vertices") for r in recs)
    med = lambda v: v[len(v) // 2]  # noqa: E731
    rate = len(recs) / dt
    print(f"{len(recs)} generated cells (intermediate_vertices {dict(ts)}), statuses {dict(st)}, load after {load()}")
    print(f"wall {dt:.1f} s ({rate:.2f} cells/s, {3600 * rate:.0f} cells/hour), CPU {cpu:.1f} s "
          f"({cpu / len(recs):.2f} CPU-s per cell including start-up)")
    print(f"per cell, in its job: median {med(arch_s):.2f} s (hidden covariance passes {med(score_s):.2f} s), "
          f"worst {arch_s[-1]:.2f} s")
    print(f"projected to the {PTB_BENCHMARK_CELLS:,} PTB cells on this machine: {PTB_BENCHMARK_CELLS / rate / 3600:.2f} h "
          f"at the measured wall rate (shared load as above); {PTB_BENCHMARK_CELLS * cpu / len(recs) / cores / 3600:.2f} h "
          f"if all {cores} cores were ours (CPU time / cores)")
    if sorted(n) != list(range(args.archs)) or set(n.values()) != {1} or st != Counter({"ok": args.archs}):
        raise SystemExit(f"expected one ok record per cell, got {dict(st)} over {len(n)} cells")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("check", choices=["launchers", "shards", "resume", "ray", "whole-space"])
    ap.add_argument("--archs", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=2, help="launchers: runs of each launcher, interleaved")
    ap.add_argument("--variants", default="basic,joblib", help=f"launchers: comma-separated, of {list(VARIANTS)}")
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--shard-size", type=int, default=10, help="shards, ray, whole-space: architectures per job")
    ap.add_argument("--ray-cpus", type=int, default=os.cpu_count(), help="ray: CPUs of the local head")
    ap.add_argument("--kill-after", type=int, default=4, help="resume: records written before the kill")
    ap.add_argument("--metrics", default=None,
                    help="comma-separated metric families (default hidden_covariance,num_params; whole-space: hidden_covariance)")
    ap.add_argument("--out", default=None, help="work folder (default: a new temporary folder)")
    args = ap.parse_args()
    if args.metrics is None:
        args.metrics = "hidden_covariance" if args.check == "whole-space" else "hidden_covariance,num_params"
    out = Path(args.out or tempfile.mkdtemp(prefix="tfnas_scale_out_"))
    out.mkdir(parents=True, exist_ok=True)
    print(f"work folder {out}; load {load()}", flush=True)
    checks = {"launchers": bench_launchers, "shards": bench_shards, "resume": bench_resume, "ray": bench_ray,
              "whole-space": bench_whole_space}
    checks[args.check](args, out)


if __name__ == "__main__":
    main()
