"""Seconds from starting the README's 4,000-job sweep to its first progress line.

Starts the real command, ``python score.py -m 'arch=range(0,4000)'`` (the
default space, data and metrics; results and Hydra logs in a temporary
folder; ``logger=none``), reads its output line by line until the first
progress line, that is a line that gives the architectures done of how many,
the rate and the time left::

    [1 of 4000 done | 0.31 arch/s, 3:35:10 left] arch 0 (id 1000000) ok 1.38s ...

prints the seconds to it and to the lines before it that tell what the sweep
is doing, and the CPU seconds the sweep's process had used by then, then
kills the sweep (its whole process group). The machine may be shared: the
load average before and after is printed with the figures; the CPU seconds
are what the wall time would be on idle cores (the basic launcher runs its
jobs in the one process, with every core's torch threads).

    python bench/first_progress.py              # the default command
    python bench/first_progress.py --repeats 3  # three runs, one after the other
    python bench/first_progress.py --extra hydra/launcher=cores

The progress bound of the README (first line within 15 s on a 2-core
machine) is what this script measures; it is not a unit test.
"""

from __future__ import annotations

import argparse
import os
import re
import selectors
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
#: A progress line: "<k> of <N> done", a rate and the time left (tfnas.tasks.progress.Tracker.step).
PROGRESS = re.compile(r"\[(\d+) of (\d+) done\b.*\b(arch/s|s/arch), (\S+) left\]")
#: Lines worth timing on the way to the first progress line.
MILESTONES = {"results ->": "launch (Hydra composed the sweep)", "Launching": "first batch launched",
              "scoring": "first job started"}


def load() -> str:
    """The 1/5/15-minute load averages, as /proc/loadavg gives them."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used so far, from ``/proc/<pid>/stat``.

    The basic launcher runs every job in the sweep's own process, so this is
    the CPU the sweep needed to reach its first progress line: on a machine
    shared with other work the wall time grows, the CPU time much less.
    """
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_run(extra: list[str], timeout: float) -> dict:
    """Start the sweep, time its output up to the first progress line, kill it.

    Returns:
        ``{"first": seconds or None, "line": the progress line, "cpu": CPU seconds by then,
        "milestones": [(seconds, label, CPU seconds)], "tail": last lines}``.
    """
    with tempfile.TemporaryDirectory(prefix="tfnas_first_progress_") as tmp:
        cmd = [sys.executable, str(REPO / "score.py"), "-m", "arch=range(0,4000)", "logger=none",
               f"paths.results_dir={tmp}/results", f"paths.log_dir={tmp}/logs", *extra]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        out = {"first": None, "line": None, "milestones": [], "tail": [], "cmd": shlex.join(cmd[1:])}
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        seen = set()
        try:
            while time.perf_counter() - t0 < timeout:
                if not sel.select(timeout=1.0):
                    if proc.poll() is not None:
                        break
                    continue
                line = proc.stdout.readline()
                if not line:
                    break
                t = time.perf_counter() - t0
                out["tail"] = (out["tail"] + [line.rstrip()])[-5:]
                for key, label in MILESTONES.items():
                    if key in line and key not in seen:
                        seen.add(key)
                        out["milestones"].append((t, label, cpu_seconds(proc.pid)))
                if PROGRESS.search(line):
                    out["first"], out["line"], out["cpu"] = t, line.rstrip(), cpu_seconds(proc.pid)
                    break
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=1, help="runs, one after the other")
    ap.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds")
    ap.add_argument("--extra", nargs="*", default=[], help="more overrides for score.py")
    args = ap.parse_args()
    print(f"cores: {len(os.sched_getaffinity(0))}; command: score.py -m 'arch=range(0,4000)' logger=none "
          f"(results in a temporary folder) {' '.join(args.extra)}")
    firsts = []
    for i in range(args.repeats):
        before = load()
        r = one_run(args.extra, args.timeout)
        after = load()
        steps = ", ".join(f"{label} {t:.1f}s ({c:.1f} CPU-s)" for t, label, c in r["milestones"])
        if r["first"] is None:
            print(f"run {i + 1}: no progress line within {args.timeout:.0f}s (load {before} -> {after}); last lines:")
            print("\n".join("    " + x for x in r["tail"]))
            continue
        firsts.append(r["first"])
        print(f"run {i + 1}: first progress line after {r['first']:.1f}s, {r['cpu']:.1f} CPU-s of score.py "
              f"(load {before} -> {after}); {steps}")
        print(f"    {r['line']}")
    if firsts:
        print(f"seconds to the first progress line: min {min(firsts):.1f}, max {max(firsts):.1f} "
              f"over {len(firsts)} run(s)")


if __name__ == "__main__":
    main()
