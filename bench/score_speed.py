"""Speed of RNN scoring, as ratios to one plain forward pass, measured in one run.

For each of N real architectures of the WikiText-2 logs (PTB scoring batch
[70, 50]), after building the model once:

- plain:   the recurrent layers over the scoring batch, no decoder, no grad;
- hidcov:  ``engine.score`` with hidden covariance alone;
- full:    ``engine.score`` with every paper metric (shared passes);
- split:   the paper's procedure: every metric computed on its own passes,
           one ``engine.score`` call per metric family, and each noise
           family running its clean pass plus one separate pass per noise
           amplitude (the paper ran each noised input on its own).

Each is timed ``--repeats`` times interleaved and the minimum kept; the
script prints per-architecture ratios and their medians. Model construction
and Lightning set-up are excluded.

    python bench/score_speed.py --archs 20 --threads 2
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
    rows = []
    print(f"{'arch':>5} {'id':>8} {'plain s':>8} {'hidcov':>7} {'full':>7} {'split':>7} {'split/full':>10}")
    for i in picks:
        arch = space[i]
        model = space.build(arch, seed=0).eval()
        x = batch[0]

        def plain():
            with torch.no_grad():
                model.run_layers(model.encoder(x))

        plain()  # warm-up: allocator and kernels
        t = {
            "plain": _time(plain, args.repeats),
            "hidcov": _time(lambda: engine.score("rnn", model, batch, ["hidden_covariance"]), args.repeats),
            "full": _time(lambda: engine.score("rnn", model, batch, FAMILIES), args.repeats),
            "split": _time(lambda: paper_procedure(model, batch), args.repeats),
        }
        r = {k: t[k] / t["plain"] for k in ("hidcov", "full", "split")}
        r["speedup"] = t["split"] / t["full"]
        rows.append(r)
        print(
            f"{i:>5} {arch.benchmark_id:>8} {t['plain']:>8.3f} {r['hidcov']:>7.2f} {r['full']:>7.2f} "
            f"{r['split']:>7.2f} {r['speedup']:>10.2f}",
            flush=True,
        )
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    print(
        f"\nmedians over {len(rows)} architectures ({torch.get_num_threads()} threads):\n"
        f"  hidden covariance alone: {med['hidcov']:.2f}x one plain forward (target <= 1.3)\n"
        f"  full suite:              {med['full']:.2f}x one plain forward (target <= 8)\n"
        f"  paper's procedure:       {med['split']:.2f}x one plain forward (one pass per metric)\n"
        f"  shared engine speed-up:  {med['speedup']:.2f}x faster than the paper's procedure (target >= 3)"
    )


if __name__ == "__main__":
    main()
