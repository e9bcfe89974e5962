"""End-to-end NAS-Bench-BERT ground-truth run, composed as ``train.py`` composes it.

    python bench/train_bert_quick.py                      # experiment=quick_bert (arch 443)
    python bench/train_bert_quick.py arch=0 threads=1
    python bench/train_bert_quick.py arch=3 glue.tasks=[rte,wnli]

Equivalent to ``python train.py experiment=quick_bert arch=0`` once
``conf/train.yaml`` lists the ``electra`` and ``glue`` groups in its defaults
and ``tfnas.tasks.train`` dispatches metric space ``"bert"`` to
:func:`tfnas.tasks.train_bert.train_bert`. Until then this script composes a
copy of ``conf/`` with those two default-list lines added, and calls
``train_bert`` directly. Results go to ``/tmp/tfnas_bert_quick`` unless
``paths.results_dir=...`` / ``paths.log_dir=...`` are given; ``threads``
defaults to 1 (a shared machine). Prints the
record's truth, the pretraining loss curves and the wall time.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

import tfnas.hydra_support  # noqa: F401  (config resolvers)
from tfnas.tasks.train_bert import train_bert

REPO = Path(__file__).resolve().parents[1]
WIRING = ("  - electra: default\n", "  - glue: default\n")


def config_dir() -> tuple[Path, bool]:
    """``conf/`` itself when train.yaml already has the groups, else a patched temporary copy."""
    conf = REPO / "conf"
    text = (conf / "train.yaml").read_text()
    if "- electra:" in text and "- glue:" in text:
        return conf, False
    tmp = Path(tempfile.mkdtemp(prefix="tfnas_conf_")) / "conf"
    shutil.copytree(conf, tmp)
    text = text.replace("  - _self_\n", "".join(WIRING) + "  - _self_\n", 1)
    # As recommended for train.yaml: each space's own scoring data and metrics (as score.yaml does).
    text = text.replace("  - data: ptb ", "  - data: ${space} ", 1).replace("  - metrics: rnn\n", "  - metrics: ${space}\n", 1)
    (tmp / "train.yaml").write_text(text)
    return tmp, True


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s %(name)s] %(message)s", datefmt="%H:%M:%S")
    torch.set_num_threads(int(next((a.split("=")[1] for a in argv if a.startswith("threads=")), 1)))
    conf, patched = config_dir()
    defaults = {"threads": "1", "paths.results_dir": "/tmp/tfnas_bert_quick/results",
                "paths.log_dir": "/tmp/tfnas_bert_quick/logs"}
    given = {a.split("=", 1)[0] for a in argv}
    overrides = ["experiment=quick_bert", *(f"{k}={v}" for k, v in defaults.items() if k not in given), *argv]
    with initialize_config_dir(config_dir=str(conf), version_base="1.3", job_name="train"):
        cfg = compose(config_name="train", overrides=overrides)
    if patched:
        shutil.rmtree(conf.parent)  # the composed config is in memory
    print(f"config from {conf}" + (" (train.yaml patched: electra/glue groups, data/metrics: ${space})"
                                   if patched else ""))
    t0 = time.perf_counter()
    counts = train_bert(cfg)
    wall = time.perf_counter() - t0
    rec = json.loads(Path(counts["record"]).read_text())
    print(json.dumps({k: counts[k] for k in ("ok", "error", "skipped", "record")}, indent=1))
    print("status:", rec["status"], rec.get("error") or "")
    print("truth:", rec["truth"], "glue tasks:", rec["extra"].get("glue_tasks"))
    pre = rec["extra"].get("pretrain") or {}
    for row in pre.get("history") or []:
        print(f"  train step {row['step']:5d}: mlm={row['mlm_loss']:.4f} disc={row['disc_loss']:.4f} "
              f"mlm_acc={row['mlm_acc']:.3f} disc_acc={row['disc_acc']:.3f} replaced={row['replaced']:.3f}")
    for row in pre.get("eval_history") or []:
        print(f"  held-out step {row['step']:5d}: mlm={row['mlm_loss']:.4f} disc={row['disc_loss']:.4f} "
              f"disc_acc={row['disc_acc']:.3f}")
    for task, r in (rec["extra"].get("finetune") or {}).items():
        print(f"  {task}: {r['metrics']} after {r['epochs']} epochs; per epoch:",
              [round(h[r['metric']] * 100, 2) for h in r["history"]], f"({r['seconds']:.0f}s)")
    shown = {k: round(v, 4) for k, v in rec["scores"].items() if k in ("num_params", "head_confidence",
                                                                       "activation_distance", "jacobian_cosine")}
    print("initial training-free scores (some):", shown, f"of {len(rec['scores'])}")
    print(f"pretraining {pre.get('seconds', float('nan')):.0f}s; wall time of this call {wall:.0f}s")


if __name__ == "__main__":
    main(sys.argv[1:])
