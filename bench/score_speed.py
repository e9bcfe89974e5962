"""Speed of RNN scoring, as ratios to one plain forward pass, measured in one run.

For each of N real architectures of the WikiText-2 logs (PTB scoring batch
[70, 50]), after building the model once:

- plain:   the recurrent layers over the scoring batch, no decoder, no grad;
- hidcov:  ``engine.score`` with hidden covariance alone;
- full:    ``engine.score`` with every paper metric (shared passes);
- split:   an EMULATION of the paper's procedure, run on tfnas's passes (not
           the paper's code): every metric computed on its own passes, one
           ``engine.score`` call per metric family, and each noise family
           running its clean pass plus one separate pass per noise amplitude
           (the paper ran each noised input on its own);
- proxies: ``engine.score`` with the seven zero-cost proxies (shared passes).

Each is timed ``--repeats`` times interleaved and the minimum kept; the
script prints per-architecture ratios, their medians and worst cases. Model
construction and Lightning set-up are excluded.

The work each needs: the matrix-product FLOPs that ``full`` and ``proxies``
dispatch are counted by running each once more under
:class:`torch.utils.flop_counter.FlopCounterMode` (every product, convolution
and attention kernel, forward-mode tangents and double backwards included;
elementwise ops not counted): ``full`` in plain forwards' FLOPs and
``proxies`` over ``full``. A time ratio can only go below its FLOP ratio by
running the products at a better rate.

The physical limit: the plain forward's matrix-product FLOPs are counted from
the recipe (every stacked weight [rows, cols] of every layer multiplies each
of the seq·batch positions once: 2·seq·batch·rows·cols; elementwise ops are
not counted), and its achieved GFLOP/s is printed against the float32 matrix
product throughput of this machine measured in the same run, at the size of
the hoisted input product ([seq·batch, 400] · [400, 2400]) and of one step's
recurrent product ([batch, 600] · [600, 2400]).

    python bench/score_speed.py --archs 20 --threads 2

Report the machine's load (``uptime``) with the figures: ratios measured in
one run tolerate load, absolute seconds and GFLOP/s do not.

BERT mode (``--space nasbench_bert``): for N NAS-Bench-BERT architectures
(evenly spaced over the 500) on the default scoring batch
(conf/data/nasbench_bert.yaml, 128 × 512 tokens), the time of ``engine.score``
with the paper's metrics (conf/metrics/bert.yaml: one ``grad`` pass, a
forward and the backward of Σ o, in chunks of 16 sequences) against the
FLOPs that pass needs, counted from the model's configuration
(:func:`tfnas.scoring.bert.passes.grad_pass_flops`), and against this
machine's float32 matrix-product throughput, measured beside each
architecture at a chunk's feed-forward product ([8192 x 256] · [256 x 1024]).
Both are timed in CPU seconds of this process (times the threads): on a
shared machine a wall-clock time, even the best of many short products, also
counts the other processes' turns. The bound is FLOPs / peak; the script
prints time / bound per architecture, medians and worst, and projects the
hours for all 500 from their FLOPs and the median achieved rate. With
``--proxies`` it also times the seven zero-cost proxies (their loss pass in
the same chunks) and prints their CPU time over the paper suite's, and their
FLOPs over the suite's, both counted by FlopCounterMode as in the RNN mode.

    python bench/score_speed.py --space nasbench_bert --archs 10 --threads 1 [--paper-compat] [--proxies]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from tfnas.data.ptb import PTBScoringData
from tfnas.paths import default_data_dir
from tfnas.scoring import engine, registry
from tfnas.scoring.proxies import PROXIES
from tfnas.scoring.rnn.passes import AMPLITUDES, noised_inputs
from tfnas.spaces.nasbench_nlp.space import NasBenchNLP
from tfnas.tasks.runtime import setup_runtime

FAMILIES = [
    "hidden_covariance",
    "activation_distance",
    "synaptic_saliency",
    "hidden_synaptic_saliency",
    "jacobian_covariance",
    "jacobian_cosine",
    "jacobian_small_noise",
    "jacobian_large_noise",
    "jacobian_more_noise",
    "num_params",
]


#: metric -> the noise amplitudes it reads, from what it asks of the grad pass ("noise:<key>").
NOISE_AMPLITUDES = {
    m.name: [k for k in AMPLITUDES if f"noise:{k}" in m.captures.get("grad", ())] for m in registry.get("rnn", FAMILIES)
}


def noised_jacobian(model, tokens, key: str) -> None:
    """The paper's pass for one noised input: forward on e + a·v·ε, then autograd's backward of Σ y."""
    with torch.no_grad():
        e = model.encoder(tokens)
    (inp,) = noised_inputs(e, 0, [key])
    inp.requires_grad_(True)
    _, y, _ = model.run_layers(inp)
    torch.autograd.grad(y.sum(), [inp])


def paper_procedure(model, batch) -> None:
    """Every metric on its own passes; noised inputs one amplitude at a time."""
    for family in FAMILIES:
        if NOISE_AMPLITUDES[family]:
            engine.score("rnn", model, batch, ["jacobian_cosine"])  # its clean Jacobian pass
            for key in NOISE_AMPLITUDES[family]:
                noised_jacobian(model, batch[0], key)
        else:
            engine.score("rnn", model, batch, [family])


def forward_flops(model, seq: int, batch: int) -> int:
    """Matrix-product FLOPs of one plain forward of the recurrent layers, from the recipe's stacked weights."""
    return sum(
        2 * seq * batch * w.shape[0] * w.shape[1]
        for layer in model.layers
        for name, w in layer.named_parameters()
        if name != "bias"
    )


def matmul_gflops(m: int, k: int, n: int, seconds: float = 0.5, cpu_time: bool = False) -> float:
    """Best float32 GFLOP/s of [m, k] · [k, n] over repeated products for about ``seconds``.

    ``cpu_time``: timed by this process's CPU seconds and multiplied by the
    thread count, the rate of the threads when they run, whatever else the
    machine runs (the BERT mode); else by wall time.
    """
    clock = time.process_time if cpu_time else time.perf_counter
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(m, k, generator=g), torch.randn(k, n, generator=g)
    out = torch.empty(m, n)
    torch.mm(a, b, out=out)
    best, t_end = float("inf"), clock() + seconds
    while clock() < t_end:
        t0 = clock()
        torch.mm(a, b, out=out)
        best = min(best, clock() - t0)
    return 2 * m * k * n / best / 1e9 * (torch.get_num_threads() if cpu_time else 1)


def counted_gflop(fn) -> float:
    """GFLOP of the products, convolutions and attention kernels that one call of ``fn`` dispatches (FlopCounterMode)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


def _time(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


# --------------------------------------------------------------------------- BERT mode


def bert_cpu_time(fn, repeats: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of the run with the least CPU time among ``repeats``."""
    best = (float("inf"), float("inf"))
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        c, w = time.process_time() - c0, time.perf_counter() - w0
        if c < best[1]:
            best = (w, c)
    return best


def bert_layers(config) -> str:
    """A short description of an encoder: H, then op-parameter/heads/I x n per layer."""
    parts = [f"{lay['operation_type']}-{lay['operation_parameter']}/{lay['num_operation_heads']}"
             f"/{lay['feed_forward_dimension']}x{lay['num_feed_forward']}" for lay in config.layers]
    return f"H{config.hidden_size} " + " ".join(parts)


def bert_main(args) -> None:
    """The BERT mode (see the module docstring)."""
    from omegaconf import OmegaConf

    from tfnas.data.text import TextScoringData
    from tfnas.scoring.bert.passes import MICRO_BATCH_TOKENS, grad_pass_flops
    from tfnas.spaces.nasbench_bert.space import NasBenchBERT, model_config

    names = list(OmegaConf.load(Path(__file__).resolve().parent.parent / "conf" / "metrics" / "bert.yaml").names)
    space = NasBenchBERT(f"{args.data_dir}/nasbench_bert/BERT_benchmark.json", paper_compat=args.paper_compat)
    batch = TextScoringData(args.data_dir, batch_size=args.batch, seq_len=args.seq_len).scoring_batch(0)
    b, s = batch["input_ids"].shape
    tokens = args.micro_batch_tokens or MICRO_BATCH_TOKENS
    threads = torch.get_num_threads()
    picks = [round(k * (len(space) - 1) / max(args.archs - 1, 1)) for k in range(args.archs)]
    print(f"paper suite ({len(names)} metric families, one grad pass) on [{b} x {s}] tokens, "
          f"paper_compat={str(args.paper_compat).lower()}, chunks of {tokens} tokens, {threads} thread(s); "
          f"load average {os.getloadavg()}", flush=True)
    proxies = f" {'prox CPU s':>10} {'prox/suite':>10} {'prox/suite FLOP':>15}" if args.proxies else ""
    print(f"{'arch':>4} {'GFLOP':>7} {'wall s':>7} {'CPU s':>7} {'GFLOP/s':>8} {'peak':>6} {'%peak':>6} "
          f"{'x bound':>7}{proxies}  layers", flush=True)
    rows = []
    for i in picks:
        model = space.build(space[i], seed=0)
        flops = grad_pass_flops(model.config, b, s)["total"]
        peak = matmul_gflops(8192, 256, 1024, seconds=1.0, cpu_time=True)
        wall, cpu = bert_cpu_time(lambda: engine.score("bert", model, batch, names, paper_compat=args.paper_compat,
                                                       options={"micro_batch_tokens": tokens}), args.repeats)
        achieved = flops / cpu / 1e9 * threads
        rows.append({"seconds": wall, "cpu": cpu, "achieved": achieved, "peak": peak, "bound": peak / achieved})
        proxies = ""
        if args.proxies:
            def run_proxies():
                engine.score("bert", model, batch, PROXIES, paper_compat=args.paper_compat,
                             options={"micro_batch_tokens": tokens})

            _, rows[-1]["prox_cpu"] = bert_cpu_time(run_proxies, args.repeats)
            rows[-1]["prox_suite"] = rows[-1]["prox_cpu"] / cpu
            rows[-1]["prox_flop"] = counted_gflop(run_proxies) / counted_gflop(lambda: engine.score(
                "bert", model, batch, names, paper_compat=args.paper_compat, options={"micro_batch_tokens": tokens}))
            proxies = f" {rows[-1]['prox_cpu']:>10.1f} {rows[-1]['prox_suite']:>10.2f} {rows[-1]['prox_flop']:>15.2f}"
        print(f"{i:>4} {flops / 1e9:>7.0f} {wall:>7.1f} {cpu:>7.1f} {achieved:>8.1f} {peak:>6.0f} "
              f"{100 * achieved / peak:>5.0f}% {peak / achieved:>7.2f}{proxies}  {bert_layers(model.config)}",
              flush=True)
        del model
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    worst = max(r["bound"] for r in rows)
    # Every architecture's FLOPs from its configuration; no model is built.
    total = sum(grad_pass_flops(model_config(a.spec, args.paper_compat), b, s)["total"] for a in space)
    hours = total / (med["achieved"] * 1e9) / 3600
    print(
        f"\nmedians (worst) over {len(rows)} architectures ({threads} thread(s); load average {os.getloadavg()}):\n"
        f"  achieved {med['achieved']:.0f} GFLOP/s per CPU-second x threads; float32 matmul peak {med['peak']:.0f}\n"
        f"  time / FLOP bound: {med['bound']:.2f}x ({worst:.2f}x) (target: median <= 2)\n"
        f"  per architecture: {med['cpu']:.1f} CPU s, {med['seconds']:.1f} s wall under this load\n"
        f"  all {len(space)} architectures: {total / 1e12:.0f} TFLOP, projected {hours:.1f} h of {threads} thread(s) "
        f"with the cores to themselves ({hours * threads / 2:.1f} h on 2 cores as {2 // threads} such job(s)), "
        f"{hours / med['bound']:.1f} h at the bound; model construction, data and start-up not included"
    )
    if args.proxies:
        print(f"  seven proxies: {med['prox_cpu']:.1f} CPU s per architecture, {med['prox_suite']:.2f}x "
              f"({max(r['prox_suite'] for r in rows):.2f}x) the paper suite (target <= 2); by FLOP count "
              f"(FlopCounterMode) {med['prox_flop']:.2f}x ({max(r['prox_flop'] for r in rows):.2f}x) the suite's")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archs", type=int, default=20, help="number of architectures (evenly spaced over the space)")
    ap.add_argument("--repeats", type=int, default=None, help="timed runs, the least kept (default 2; BERT mode 1)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    ap.add_argument("--data-dir", default=str(default_data_dir()))
    ap.add_argument("--space", default="nasbench_nlp", choices=["nasbench_nlp", "nasbench_bert"])
    bert = ap.add_argument_group("BERT mode (--space nasbench_bert)")
    bert.add_argument("--paper-compat", action="store_true", help="build and score as paper_compat=true")
    bert.add_argument("--batch", type=int, default=128, help="sequences of the scoring batch (default data: 128)")
    bert.add_argument("--seq-len", type=int, default=512, help="tokens per sequence (default data: 512)")
    bert.add_argument("--micro-batch-tokens", type=int, default=0, help="tokens per grad-pass chunk (0: the default)")
    bert.add_argument("--proxies", action="store_true", help="also time the seven zero-cost proxies")
    args = ap.parse_args()
    setup_runtime(args.threads)  # threads and allocator as score.py sets them
    if args.space == "nasbench_bert":
        args.repeats = args.repeats or 1  # a 128 x 512 pass takes tens of CPU seconds
        bert_main(args)
        return
    args.repeats = args.repeats or 2
    space = NasBenchNLP(f"{args.data_dir}/nasbench_nlp/train_logs_wikitext-2.zip")
    batch = PTBScoringData(args.data_dir).scoring_batch(0)
    ok = [i for i in range(len(space)) if not space[i].meta.get("failed")]
    picks = [ok[round(k * (len(ok) - 1) / max(args.archs - 1, 1))] for k in range(args.archs)]
    seq, bsz = batch[0].shape
    peaks = []  # (large, step-sized) product GFLOP/s, measured beside each architecture: the load drifts
    rows = []
    print(
        f"{'arch':>5} {'id':>8} {'plain s':>8} {'GFLOP':>6} {'GFLOP/s':>8} {'%peak':>6} {'hidcov':>7} {'full':>7} "
        f"{'split*':>7} {'split/full':>10} {'proxies':>8} {'prox/full':>9} {'full FLOP':>9} {'prox/full FLOP':>14}"
    )
    for i in picks:
        arch = space[i]
        model = space.build(arch, seed=0).eval()
        x = batch[0]

        def plain():
            with torch.no_grad():
                model.run_layers(model.encoder(x))

        plain()  # warm-up: allocator and kernels
        peaks.append((matmul_gflops(seq * bsz, 400, 2400), matmul_gflops(bsz, 600, 2400)))
        t = {
            "plain": _time(plain, args.repeats),
            "hidcov": _time(lambda: engine.score("rnn", model, batch, ["hidden_covariance"]), args.repeats),
            "full": _time(lambda: engine.score("rnn", model, batch, FAMILIES), args.repeats),
            "split": _time(lambda: paper_procedure(model, batch), args.repeats),
            "proxies": _time(lambda: engine.score("rnn", model, batch, PROXIES), args.repeats),
        }
        r = {k: t[k] / t["plain"] for k in ("hidcov", "full", "split", "proxies")}
        r["speedup"] = t["split"] / t["full"]
        r["prox_full"] = t["proxies"] / t["full"]
        flops = forward_flops(model, seq, bsz)
        full_gflop = counted_gflop(lambda: engine.score("rnn", model, batch, FAMILIES))
        r["full_flop"] = full_gflop * 1e9 / flops
        r["prox_flop"] = counted_gflop(lambda: engine.score("rnn", model, batch, PROXIES)) / full_gflop
        r["gflops"] = flops / t["plain"] / 1e9
        r["peak"] = r["gflops"] / peaks[-1][0]
        rows.append(r)
        print(
            f"{i:>5} {arch.benchmark_id:>8} {t['plain']:>8.3f} {flops / 1e9:>6.1f} {r['gflops']:>8.1f} "
            f"{100 * r['peak']:>5.0f}% {r['hidcov']:>7.2f} {r['full']:>7.2f} {r['split']:>7.2f} "
            f"{r['speedup']:>10.2f} {r['proxies']:>8.2f} {r['prox_full']:>9.2f} {r['full_flop']:>9.2f} "
            f"{r['prox_flop']:>14.2f}",
            flush=True,
        )
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    peak_big, peak_step = (statistics.median(p[j] for p in peaks) for j in (0, 1))
    hi = {k: max(r[k] for r in rows) for k in rows[0]}
    lo = {k: min(r[k] for r in rows) for k in rows[0]}
    print(
        f"\n* split = an emulation of the paper's one-pass-per-metric procedure on tfnas's passes, not the paper's code"
        f"\nfloat32 matmul throughput measured beside each architecture (median): {peak_big:.0f} GFLOP/s for [{seq * bsz} x 400]·[400 x 2400], "
        f"{peak_step:.0f} GFLOP/s for [{bsz} x 600]·[600 x 2400]"
        f"\nmedians (worst) over {len(rows)} architectures ({torch.get_num_threads()} threads):\n"
        f"  hidden covariance alone: {med['hidcov']:.2f}x ({hi['hidcov']:.2f}x) one plain forward (target <= 1.3, none > 2)\n"
        f"  full paper suite:        {med['full']:.2f}x ({hi['full']:.2f}x) one plain forward (target <= 6)\n"
        f"  paper's procedure*:      {med['split']:.2f}x ({hi['split']:.2f}x) one plain forward (one pass per metric)\n"
        f"  shared engine speed-up:  {med['speedup']:.2f}x ({lo['speedup']:.2f}x) faster than the paper's procedure*\n"
        f"  seven proxies:           {med['proxies']:.2f}x ({hi['proxies']:.2f}x) one plain forward; "
        f"{med['prox_full']:.2f}x ({hi['prox_full']:.2f}x) the full paper suite (target <= 2)\n"
        f"  plain forward:           {med['gflops']:.0f} GFLOP/s ({lo['gflops']:.0f}), "
        f"{100 * med['peak']:.0f}% ({100 * lo['peak']:.0f}%) of the large-product throughput measured beside it\n"
        f"  by FLOP count:           the full suite dispatches {med['full_flop']:.2f}x ({hi['full_flop']:.2f}x) the "
        f"plain forward's FLOPs; the proxies {med['prox_flop']:.2f}x ({hi['prox_flop']:.2f}x) the full suite's"
    )

if __name__ == "__main__":
    main()
