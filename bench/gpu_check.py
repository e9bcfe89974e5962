"""Read the records of ``bench/gpu_check.sh``: device scores against CPU scores, throughput, GPU memory.

``compare`` matches two results folders architecture by architecture and
score by score: equal when both are NaN, both the same infinity, or within a
relative tolerance (``|a - b| <= rel * |a|``, the CPU value ``a`` as the
reference). It prints the worst relative difference of every score name
and each score beyond the tolerance with both values (the reason for such a
difference has to be found by reading the metric; this only locates it).

``throughput`` prints architectures per second of one timed sweep, the
scoring seconds per architecture (median, worst; from the records), the
device the records name and their peak CUDA memory (``cuda_peak_bytes``:
``torch.cuda.max_memory_allocated`` while scoring one architecture).

``memory`` prints the largest value of an ``nvidia-smi`` memory log (MiB,
one number a line): every process on the GPU together, CUDA contexts
included.

    python bench/gpu_check.py compare OUT/cpu OUT/dev_j1 --space nasbench_nlp --rel 1e-4 --device cuda
    python bench/gpu_check.py throughput OUT/dev_j4 --space nasbench_nlp --wall 31.2 --jobs 4
    python bench/gpu_check.py memory OUT/smi_nasbench_nlp_j4.txt

Exit status of ``compare``: 0 when every architecture has an ``ok`` record
on both sides, on the expected device, and every score agrees; 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path


def load(results_dir: Path, space: str) -> dict[int, dict]:
    """Records of ``results_dir/space`` by architecture index.

    Raises:
        SystemExit: the folder holds no record.
    """
    recs = {}
    for p in sorted((Path(results_dir) / space).glob("arch_*.json")):
        r = json.loads(p.read_text())
        recs[int(r["arch"])] = r
    if not recs:
        raise SystemExit(f"no records in {Path(results_dir) / space}")
    return recs


def rel_diff(ref: float, got: float) -> float:
    """``|got - ref| / |ref|``; 0 for equal values (NaN and NaN, the same infinity), inf for a NaN/inf mismatch."""
    if ref == got or (math.isnan(ref) and math.isnan(got)):
        return 0.0
    if not (math.isfinite(ref) and math.isfinite(got)):
        return math.inf
    return abs(got - ref) / abs(ref) if ref != 0 else math.inf


def compare(args: argparse.Namespace) -> int:
    ref, got = load(args.ref, args.space), load(args.got, args.space)
    problems: list[str] = []
    if sorted(ref) != sorted(got):
        problems.append(f"architectures differ: only CPU {sorted(set(ref) - set(got))}, "
                        f"only device {sorted(set(got) - set(ref))}")
    worst: dict[str, tuple[float, int]] = {}
    beyond: list[str] = []
    devices = set()
    for i in sorted(set(ref) & set(got)):
        a, b = ref[i], got[i]
        devices.add(b.get("extra", {}).get("device"))
        for side, r in (("CPU", a), ("device", b)):
            if r["status"] != "ok":
                problems.append(f"arch {i}: {side} record is {r['status']}: {r.get('error')}")
        if set(a["scores"]) != set(b["scores"]):
            problems.append(f"arch {i}: score names differ: {sorted(set(a['scores']) ^ set(b['scores']))}")
        for name in sorted(set(a["scores"]) & set(b["scores"])):
            d = rel_diff(float(a["scores"][name]), float(b["scores"][name]))
            if d > worst.get(name, (-1.0, -1))[0]:
                worst[name] = (d, i)
            if d > args.rel:
                beyond.append(f"  arch {i} {name}: CPU {a['scores'][name]!r} device {b['scores'][name]!r} "
                              f"(relative {d:.2e}; CPU reason {a['reasons'].get(name, '-')!r}, "
                              f"device reason {b['reasons'].get(name, '-')!r})")
    if args.device and not all(str(d).startswith(args.device) for d in devices):
        problems.append(f"device records name {sorted(map(str, devices))}, expected {args.device}")
    n = len(set(ref) & set(got))
    print(f"{args.space}: {n} architectures, {len(worst)} score names, device {sorted(map(str, devices))}; "
          f"worst relative difference per score (arch):")
    for name, (d, i) in sorted(worst.items(), key=lambda kv: -kv[1][0]):
        print(f"  {name:34s} {d:9.2e}  (arch {i})")
    if beyond:
        print(f"{len(beyond)} score(s) beyond {args.rel:g} relative:")
        print("\n".join(beyond))
    for p in problems:
        print(f"PROBLEM {p}")
    ok = not beyond and not problems
    print(f"{args.space}: device scores {'EQUAL' if ok else 'NOT EQUAL'} to CPU scores at {args.rel:g} relative "
          f"({n} architectures)")
    return 0 if ok else 1


def throughput(args: argparse.Namespace) -> int:
    recs = load(args.results, args.space)
    secs = sorted(float(r.get("extra", {}).get("score_seconds", math.nan)) for r in recs.values())
    whole = sorted(float(r["seconds"]) for r in recs.values())
    peaks = [int(r["extra"]["cuda_peak_bytes"]) for r in recs.values() if "cuda_peak_bytes" in r.get("extra", {})]
    devices = sorted({str(r.get("extra", {}).get("device")) for r in recs.values()})
    statuses = sorted({r["status"] for r in recs.values()})
    peak = f"{max(peaks) / 2**20:.0f} MiB (median {statistics.median(peaks) / 2**20:.0f})" if peaks else "n/a (not CUDA)"
    print(f"{args.space} jobs={args.jobs}: {len(recs)} archs in {args.wall:.1f} s wall = {len(recs) / args.wall:.2f} "
          f"archs/s; per arch (in its job) median {statistics.median(whole):.2f} s, worst {whole[-1]:.2f} s; "
          f"scoring alone median {statistics.median(secs):.2f} s; peak torch CUDA memory per arch {peak}; "
          f"device {devices}; status {statuses}")
    return 0


def memory(args: argparse.Namespace) -> int:
    p = Path(args.log)
    vals = [float(x) for x in p.read_text().split()] if p.is_file() else []
    vals = [v for v in vals if math.isfinite(v)]
    print(f"nvidia-smi memory.used, max over the run: {max(vals):.0f} MiB ({len(vals)} samples)" if vals
          else "nvidia-smi memory.used: no samples")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("compare", help="device records against CPU records")
    c.add_argument("ref", type=Path, help="results folder of the CPU run")
    c.add_argument("got", type=Path, help="results folder of the device run")
    c.add_argument("--space", required=True)
    c.add_argument("--rel", type=float, default=1e-4)
    c.add_argument("--device", default=None, help="the device records must name (prefix), e.g. cuda")
    t = sub.add_parser("throughput", help="architectures per second of one sweep")
    t.add_argument("results", type=Path)
    t.add_argument("--space", required=True)
    t.add_argument("--wall", type=float, required=True, help="seconds the sweep took")
    t.add_argument("--jobs", type=int, required=True)
    m = sub.add_parser("memory", help="largest value of an nvidia-smi memory log")
    m.add_argument("log")
    args = ap.parse_args(argv)
    return {"compare": compare, "throughput": throughput, "memory": memory}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
