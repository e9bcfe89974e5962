"""Cost of the full GPT metric set per architecture, and its peak memory, on this machine.

For each LTS set, scores the smallest, the median and the largest decoder by
non-embedding parameters (or ``--archs``) with every registered ``gpt``
metric on the set's default scoring batch (8 x 64 tokens on WikiText-103,
16 x 32 on LM1B), each in a fresh child process so that its peak resident
memory (``ru_maxrss``) is its own. Prints, per architecture, the wall time of
the scoring (model built, passes and metrics), the time of each pass group
measured in the same run, and the peak RSS; then the per-set mean.

    python bench/gpt_cost.py                     # threads=1
    python bench/gpt_cost.py --sets wt103 --archs 0,93 --threads 2
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
#: Default scoring batch per set (conf/data/lts_gpt2_<set>.yaml).
BATCH = {"wt103": (8, 64), "lm1b": (16, 32)}


def _score(which: str, index: int, threads: int, out: mp.Queue) -> None:
    sys.path.insert(0, str(REPO))
    import torch

    from tfnas.data.causal_text import CausalTextScoringData
    from tfnas.scoring import engine, registry
    from tfnas.spaces.lts_gpt2 import SPACES

    torch.set_num_threads(threads)
    space = SPACES[which]()
    b, s = BATCH[which]
    batch = CausalTextScoringData(batch_size=b, seq_len=s).scoring_batch(0)
    t0 = time.perf_counter()
    model = space.build(space[index])
    built = time.perf_counter() - t0
    res = engine.score("gpt", model, batch, registry.available("gpt"))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    nan = sorted(k for k, v in res.reasons.items() if "model has" not in v)
    out.put({"build": built, "score": res.seconds, "peak_mb": peak_mb,
             "nonembedding": space[index].meta["params"].get("nonembedding"), "undefined": nan})  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sets", default="wt103,lm1b")
    p.add_argument("--archs", default=None, help="comma-separated indices (default: smallest, median, largest)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    sys.path.insert(0, str(REPO))
    from tfnas.spaces.lts_gpt2 import SPACES

    ctx = mp.get_context("spawn")
    for which in args.sets.split(","):
        space = SPACES[which]()
        if args.archs:
            picks = [int(i) for i in args.archs.split(",")]
        else:
            order = sorted(range(len(space)), key=lambda i: space[i].meta["params"]["nonembedding"])
            picks = [order[0], order[len(order) // 2], order[-1]]
        rows = []
        for i in picks:
            q = ctx.Queue()
            proc = ctx.Process(target=_score, args=(which, i, args.threads, q))
            proc.start()
            row = q.get()
            proc.join()
            rows.append(row)
            print(f"{which} arch {i:3d}: {row['nonembedding'] / 1e6:6.2f} M non-embedding, build {row['build']:5.1f} s, "
                  f"all metrics {row['score']:6.1f} s, peak RSS {row['peak_mb']:6.0f} MB"
                  + (f", undefined: {', '.join(row['undefined'])}" if row["undefined"] else ""), flush=True)
        mean = sum(r["score"] + r["build"] for r in rows) / len(rows)
        print(f"{which}: mean {mean:.1f} s per architecture over {len(rows)} ({args.threads} thread(s)); "
              f"max peak RSS {max(r['peak_mb'] for r in rows):.0f} MB")


if __name__ == "__main__":
    main()
