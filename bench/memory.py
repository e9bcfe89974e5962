"""Resident memory of one scoring process across many architectures (shard mode).

Scores N generated NAS-Bench-NLP cells in one process, as one shard job of
``score.py`` does (``space.benchmark=null space.generate=N shard=0
shard_size=N``), calling the scoring task in-process. A logging handler on
the task's logger reads the resident set size (``VmRSS`` of
/proc/self/status) each time an architecture's record is written, so the
samples are taken between architectures. Every ``--probe-every``
architectures it also counts live objects that would reveal a leak
(tensors, Lightning Trainers, modules).

Prints the RSS after the first, the ``--from``-th and the last architecture,
the growth between the last two and its rate (least-squares slope over
``--from``..N, MB per 100 architectures).

    python bench/memory.py --archs 500 --metrics hidden_covariance,num_params
    python bench/memory.py --archs 100 --metrics jacobian_cosine,hidden_synaptic_saliency,num_params
    python bench/memory.py --archs 60 --from 10 --metrics ... --trim   # live memory, without glibc's free heap

``--peak`` instead scores one architecture of each space with its default
scoring data and metrics (``python score.py space=S arch=A``, nothing else
set but threads and throw-away output folders), each in a child process, and
prints the child's peak resident set size (``ru_maxrss`` of ``wait4``):

    python bench/memory.py --peak                                   # every space, arch 0
    python bench/memory.py --peak --spaces nasbench_bert --arch 0 --paper-compat
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def rss_mb() -> float:
    """Resident set size of this process in MB (VmRSS, /proc/self/status)."""
    m = re.search(r"^VmRSS:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    if m is None:
        raise RuntimeError("VmRSS not found in /proc/self/status (Linux only)")
    return int(m.group(1)) / 1024


def live_objects() -> dict[str, int]:
    """Counts of live objects that a leak across architectures would pile up."""
    import lightning.pytorch as pl
    import torch

    counts = {"tensors": 0, "trainers": 0, "modules": 0}
    for o in gc.get_objects():
        try:
            if isinstance(o, torch.Tensor):
                counts["tensors"] += 1
            elif isinstance(o, pl.Trainer):
                counts["trainers"] += 1
            elif isinstance(o, torch.nn.Module):
                counts["modules"] += 1
        except ReferenceError:  # weak proxies
            pass
    return counts


def malloc_trim() -> None:
    """Return the C heap's free memory to the system (glibc ``malloc_trim(0)``).

    Raises:
        OSError: no glibc (``--trim`` is Linux/glibc only).
    """
    import ctypes

    ctypes.CDLL("libc.so.6").malloc_trim(0)


class RSSSampler(logging.Handler):
    """Samples RSS whenever the scoring task logs an architecture's outcome.

    Args:
        probe_every: count live objects every K architectures (0: never).
        trim: call :func:`malloc_trim` before each sample, so the sample shows
            memory still in use rather than free heap glibc keeps.
    """

    def __init__(self, probe_every: int, trim: bool = False):
        super().__init__(level=logging.INFO)
        self.samples: list[tuple[int, float, float]] = []  # (architectures done, RSS MB, seconds)
        self.probes: list[tuple[int, dict]] = []
        self.probe_every = probe_every
        self.trim = trim
        self.t0 = time.perf_counter()

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if not msg.startswith("arch "):
            return
        if self.trim:
            malloc_trim()
        n = len(self.samples) + 1
        self.samples.append((n, rss_mb(), time.perf_counter() - self.t0))
        if self.probe_every and n % self.probe_every == 0:
            self.probes.append((n, live_objects()))
            print(f"  {n:4d} archs  RSS {self.samples[-1][1]:7.1f} MB  {self.probes[-1][1]}", flush=True)


def slope_per_100(points: list[tuple[int, float]]) -> float:
    """Least-squares slope of RSS against architecture count, in MB per 100 architectures."""
    n = len(points)
    if n < 2:
        return float("nan")
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    sxy = sum((x - mx) * (y - my) for x, y in points)
    return 100 * sxy / sxx


def peak_per_space(spaces: list[str], arch: int, threads: int, paper_compat: bool) -> None:
    """Score ``arch`` of each space in a child ``score.py`` and print its peak RSS and wall time.

    Raises:
        SystemExit: a child exited non-zero (its last output lines are printed).
    """
    print(f"peak resident memory of one scoring process, default data and metrics, arch={arch}, "
          f"{threads} thread(s), paper_compat={str(paper_compat).lower()}; load average {os.getloadavg()}", flush=True)
    print(f"{'space':<16} {'peak RSS MB':>12} {'wall s':>8}", flush=True)
    failed = []
    for space in spaces:
        with tempfile.TemporaryDirectory(prefix="tfnas_peak_") as tmp:
            cmd = [sys.executable, str(REPO / "score.py"), f"space={space}", f"arch={arch}", f"threads={threads}",
                   f"paper_compat={str(paper_compat).lower()}", "logger=none", f"paths.results_dir={tmp}/results",
                   f"paths.log_dir={tmp}/logs"]
            t0 = time.perf_counter()
            child = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            output = child.stdout.read()
            _, status, usage = os.wait4(child.pid, 0)
            child.returncode = os.waitstatus_to_exitcode(status)
            wall = time.perf_counter() - t0
        if child.returncode:
            failed.append(space)
            print(f"{space:<16} failed (exit {child.returncode}):\n" + "\n".join(output.splitlines()[-5:]), flush=True)
            continue
        print(f"{space:<16} {usage.ru_maxrss / 1024:>12.0f} {wall:>8.0f}", flush=True)  # ru_maxrss: kB on Linux
    if failed:
        raise SystemExit(f"failed: {failed}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archs", type=int, default=500, help="generated architectures scored in one process")
    ap.add_argument("--from", dest="start", type=int, default=50, help="growth is measured from this architecture")
    ap.add_argument("--metrics", default="hidden_covariance,num_params", help="comma-separated metric families")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--logger", default="tensorboard", choices=["tensorboard", "none"])
    ap.add_argument("--probe-every", type=int, default=50, help="count live objects every K architectures (0: never)")
    ap.add_argument("--trim", action="store_true", help="malloc_trim(0) before each sample (free heap vs. live memory)")
    ap.add_argument("--csv", default=None, help="write the samples (archs, rss_mb, seconds) here")
    ap.add_argument("--results-dir", default=None, help="records folder (default: a new temporary folder)")
    ap.add_argument("--peak", action="store_true", help="peak RSS of one architecture per space (child processes)")
    ap.add_argument("--spaces", default=",".join(sorted(p.stem for p in (REPO / "conf" / "space").glob("*.yaml"))),
                    help="--peak: comma-separated spaces (default: every conf/space)")
    ap.add_argument("--arch", type=int, default=0, help="--peak: the architecture scored in each space")
    ap.add_argument("--paper-compat", action="store_true", help="--peak: score with paper_compat=true")
    args = ap.parse_args()
    if args.peak:
        peak_per_space(args.spaces.split(","), args.arch, args.threads, args.paper_compat)
        return
    if not 1 <= args.start < args.archs:
        raise SystemExit(f"--from must be in [1, --archs), got {args.start}")

    from hydra import compose, initialize_config_dir

    import tfnas.hydra_support  # noqa: F401  (config resolvers)
    from tfnas.tasks.score import score

    out = args.results_dir or tempfile.mkdtemp(prefix="tfnas_memory_")
    overrides = [
        "space.benchmark=null",
        f"space.generate={args.archs}",
        "shard=0",
        f"shard_size={args.archs}",
        f"metrics.names=[{args.metrics}]",
        f"threads={args.threads}",
        f"logger={args.logger}",
        f"paths.results_dir={out}",
    ]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="score", overrides=overrides)
    logging.basicConfig(level=logging.WARNING)
    sampler = RSSSampler(args.probe_every, args.trim)
    task_log = logging.getLogger("tfnas.score")
    task_log.setLevel(logging.INFO)
    task_log.addHandler(sampler)
    task_log.propagate = False  # one line per architecture would drown the probes
    print(f"scoring {args.archs} generated architectures in one process: {' '.join(overrides)}", flush=True)
    start_rss = rss_mb()
    counts = score(cfg)
    task_log.removeHandler(sampler)

    s = sampler.samples
    if len(s) < args.archs:
        raise SystemExit(f"only {len(s)} of {args.archs} architectures were scored: {counts}")
    if args.csv:
        Path(args.csv).write_text("archs,rss_mb,seconds\n" + "".join(f"{n},{r:.1f},{t:.2f}\n" for n, r, t in s))
    at = {n: r for n, r, _ in s}
    growth = at[args.archs] - at[args.start]
    rate = slope_per_100([(n, r) for n, r, _ in s if n >= args.start])
    print(
        f"\n{counts}; {s[-1][2]:.0f} s ({s[-1][2] / len(s):.2f} s per architecture), metrics {args.metrics}, "
        f"{args.threads} thread(s), logger {args.logger}{', malloc_trim before each sample' if args.trim else ''}\n"
        f"RSS before scoring {start_rss:.1f} MB, after arch 1 {at[1]:.1f} MB, after arch {args.start} "
        f"{at[args.start]:.1f} MB, after arch {args.archs} {at[args.archs]:.1f} MB, peak {max(at.values()):.1f} MB\n"
        f"growth from arch {args.start} to {args.archs}: {growth:+.1f} MB "
        f"(least-squares slope {rate:+.2f} MB per 100 architectures)"
    )
    sys.exit(0)


if __name__ == "__main__":
    main()
