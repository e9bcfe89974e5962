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
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from tfnas.data.ptb import PTBScoringData
from tfnas.paths import default_data_dir
from tfnas.scoring import engine, registry
from tfnas.scoring.rnn.passes import AMPLITUDES, noised_inputs
from tfnas.spaces.nasbench_nlp.space import NasBenchNLP
from tfnas.tasks.runtime import setup_runtime

PROXIES = ["grad_norm", "snip", "grasp", "fisher", "synflow", "naswot", "zen"]
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


def matmul_gflops(m: int, k: int, n: int, seconds: float = 0.5) -> float:
    """Best float32 GFLOP/s of [m, k] · [k, n] over repeated products for about ``seconds``."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(m, k, generator=g), torch.randn(k, n, generator=g)
    out = torch.empty(m, n)
    torch.mm(a, b, out=out)
    best, t_end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - t0)
    return 2 * m * k * n / best / 1e9


def _time(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archs", type=int, default=20, help="number of architectures (evenly spaced over the logs)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    ap.add_argument("--data-dir", default=str(default_data_dir()))
    args = ap.parse_args()
    setup_runtime(args.threads)  # threads and allocator as score.py sets them
    space = NasBenchNLP(f"{args.data_dir}/nasbench_nlp/train_logs_wikitext-2.zip")
    batch = PTBScoringData(args.data_dir).scoring_batch(0)
    ok = [i for i in range(len(space)) if not space[i].meta.get("failed")]
    picks = [ok[round(k * (len(ok) - 1) / max(args.archs - 1, 1))] for k in range(args.archs)]
    seq, bsz = batch[0].shape
    peaks = []  # (large, step-sized) product GFLOP/s, measured beside each architecture: the load drifts
    rows = []
    print(
        f"{'arch':>5} {'id':>8} {'plain s':>8} {'GFLOP':>6} {'GFLOP/s':>8} {'%peak':>6} {'hidcov':>7} {'full':>7} "
        f"{'split*':>7} {'split/full':>10} {'proxies':>8} {'prox/full':>9}"
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
        r["gflops"] = flops / t["plain"] / 1e9
        r["peak"] = r["gflops"] / peaks[-1][0]
        rows.append(r)
        print(
            f"{i:>5} {arch.benchmark_id:>8} {t['plain']:>8.3f} {flops / 1e9:>6.1f} {r['gflops']:>8.1f} "
            f"{100 * r['peak']:>5.0f}% {r['hidcov']:>7.2f} {r['full']:>7.2f} {r['split']:>7.2f} "
            f"{r['speedup']:>10.2f} {r['proxies']:>8.2f} {r['prox_full']:>9.2f}",
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
        f"{100 * med['peak']:.0f}% ({100 * lo['peak']:.0f}%) of the large-product throughput measured beside it"
    )

if __name__ == "__main__":
    main()
