"""A small synthetic data folder in the layout of the real one, for tests that do not need the real data.

:func:`make_data_dir` writes, under one folder (what ``paths.data_dir`` points at):

- ``ptb/ptb.{train,valid,test}.txt``: Mikolov-format text over 300 words
  (no ``<eos>`` in the files; the loader adds it per line), enough for one
  70 x 50 scoring batch and a few training windows;
- ``nasbench_nlp/train_logs_wikitext-2.zip`` and ``recepies_example.json``:
  :data:`NLP_RECIPES` as benchmark logs (recipe ids 1000000.., losses made up)
  and as a recipe list;
- ``nasbench_bert/search_space.json`` (the benchmark's definition) and
  ``BERT_benchmark.json`` with :data:`BERT_ENTRIES` entries drawn from it;
- ``tokenizers/bert-base-uncased/vocab.txt``: a WordPiece vocabulary with
  BERT-uncased's special-token ids ([PAD] 0, [UNK] 100, [CLS] 101, [SEP] 102,
  [MASK] 103) and the PTB words;
- ``glue/RTE/{train,dev}.tsv``: a few sentence pairs;
- ``lts/saved_logs/random_GPT2_{wt103,lm1b}/``: :data:`LTS_CONFIGS` small
  decoders per set drawn from the set's choices (``model_config.yaml``,
  ``ppl_summary.yaml``, ``params_summary.yaml``).

The values mean nothing: tests on it check plumbing (configs, the job loop,
readers, records), never published figures. A new search space adds its
files here.
"""

from __future__ import annotations

import json
import random
import zipfile
from pathlib import Path

import numpy as np

#: Words of the synthetic PTB text (besides ``<unk>`` and ``N``).
WORDS = [f"w{i}" for i in range(300)]
#: Recipes of the synthetic NAS-Bench-NLP logs: a vanilla RNN, an LSTM-like cell (T = 2) and a blend cell.
NLP_RECIPES = [
    {"lin": {"op": "linear", "input": ["x", "h_prev_0"]},
     "h_new_0": {"op": "activation_tanh", "input": ["lin"]}},
    {"i": {"op": "linear", "input": ["x", "h_prev_0"]}, "i_s": {"op": "activation_sigm", "input": ["i"]},
     "f": {"op": "linear", "input": ["x", "h_prev_0"]}, "f_s": {"op": "activation_sigm", "input": ["f"]},
     "g": {"op": "linear", "input": ["x", "h_prev_0"]}, "g_t": {"op": "activation_tanh", "input": ["g"]},
     "ig": {"op": "elementwise_prod", "input": ["i_s", "g_t"]}, "fc": {"op": "elementwise_prod", "input": ["f_s", "h_prev_1"]},
     "h_new_1": {"op": "elementwise_sum", "input": ["ig", "fc"]},
     "c_t": {"op": "activation_tanh", "input": ["h_new_1"]},
     "h_new_0": {"op": "elementwise_prod", "input": ["i_s", "c_t"]}},
    {"z": {"op": "linear", "input": ["x", "h_prev_0"]}, "z_s": {"op": "activation_sigm", "input": ["z"]},
     "c": {"op": "linear", "input": ["x"]}, "c_t": {"op": "activation_tanh", "input": ["c"]},
     "h_new_0": {"op": "blend", "input": ["z_s", "h_prev_0", "c_t"]}},
]
#: Entries of the synthetic NAS-Bench-BERT benchmark.
BERT_ENTRIES = 3
BERT_SEARCH_SPACE = {
    "hidden_size": [128, 256],
    "num_encoder_layers": [2, 4],
    "encoder_layer": {
        "operation_type": ["SA", "LT", "DSC"],
        "num_operation_heads": [2, 4],
        "feed_forward_dimension": [512, 1024],
        "num_feed_forward": [1, 3],
        "SA": ["SDP", "WMA"],
        "LT": ["DFT", "DCT"],
        "DSC": [5, 9],
    },
}
GLUE_KEYS = ("cola", "mnli", "mrpc", "qnli", "qqp", "rte", "sst", "sts")


def nlp_log(recipe_id: int, recipe: dict, epochs: int = 3, status: str = "OK", seed: int = 0) -> dict:
    """One ``log_stats_model_*.json`` object of the benchmark's format, with made-up losses."""
    rng = random.Random(seed)
    losses = [6.5 - 0.3 * e + 0.01 * rng.random() for e in range(epochs)]
    return {
        "recepie": json.dumps(recipe), "recepie_id": recipe_id, "emsize": 400, "nhid": 600, "nlayers": 3,
        "dropout": 0.1, "dropouth": 0.25, "dropouti": 0.4, "dropoute": 0.0, "wdrop": 0.1, "tied": True, "bptt": 70,
        "batch_size": 20, "eval_batch_size": 50, "lr": 1e-3, "wdecay": 1.2e-6, "epochs": 50, "clip": 0.25,
        "alpha": 2, "beta": 1, "num_params": 1000, "train_losses": [x + 0.1 for x in losses],
        "val_losses": [x + 0.05 for x in losses], "test_losses": losses, "wall_times": [1.0] * epochs,
        "status": status,
    }


def log_name(recipe_id: int, experiment_id: int) -> str:
    """The benchmark's file name of a log."""
    return f"log_stats_model_{recipe_id}_2020-04-28_17-16-54_{experiment_id}.json"


def write_nlp_zip(path: Path, recipes: list[dict] = NLP_RECIPES, compression: int = zipfile.ZIP_DEFLATED) -> Path:
    """A zip of one log per recipe (recipe ids 1000000 + i) under ``logs/``, like the benchmark's archives."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for i, recipe in enumerate(recipes):
            zf.writestr(f"logs/{log_name(1_000_000 + i, 999_000_000 + i)}", json.dumps(nlp_log(1_000_000 + i, recipe, seed=i)))
    return path


def _ptb_split(path: Path, n_tokens: int, seed: int) -> None:
    rng = random.Random(seed)
    lines, total = [], 0
    while total < n_tokens:
        n = rng.randint(5, 20)
        words = [rng.choice(WORDS) if rng.random() > 0.05 else rng.choice(["<unk>", "N"]) for _ in range(n)]
        lines.append(" " + " ".join(words) + " ")
        total += n + 1
    path.write_text("\n".join(lines) + "\n")


def write_bert(folder: Path) -> None:
    """``search_space.json`` and a ``BERT_benchmark.json`` of :data:`BERT_ENTRIES` uniformly drawn entries."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "search_space.json").write_text(json.dumps(BERT_SEARCH_SPACE, indent=1))
    rng = np.random.default_rng(0)
    layer = BERT_SEARCH_SPACE["encoder_layer"]
    entries = []
    for i in range(BERT_ENTRIES):
        layers = []
        for _ in range(int(rng.choice(BERT_SEARCH_SPACE["num_encoder_layers"]))):
            op = str(rng.choice(layer["operation_type"]))
            param = layer[op][int(rng.integers(2))]
            layers.append({"operation_type": op, "operation_parameter": param,
                           "num_operation_heads": int(rng.choice(layer["num_operation_heads"])),
                           "feed_forward_dimension": int(rng.choice(layer["feed_forward_dimension"])),
                           "num_feed_forward": int(rng.choice(layer["num_feed_forward"]))})
        scores = {k: float(50 + 30 * rng.random()) for k in GLUE_KEYS}
        scores["glue"] = sum(scores.values()) / len(GLUE_KEYS)
        entries.append({"id": i, "time_to_train": 1.0, "scores": scores, "hparams": {
            "learning_rate": 5e-4, "train_batch_size": 128, "num_train_steps": 100000,
            "model_hparam_overrides": {"hidden_size": int(rng.choice(BERT_SEARCH_SPACE["hidden_size"])),
                                       "nas_config": {"encoder_layers": layers}}}})
    (folder / "BERT_benchmark.json").write_text(json.dumps(entries))


def write_vocab(folder: Path) -> None:
    """A BERT-uncased-like ``vocab.txt``: the special tokens at their ids, then the PTB words and their pieces."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += ["<", ">", "unk", "n", "w", "."] + [str(d) for d in range(10)] + [f"##{d}" for d in range(10)] + WORDS
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")


def write_glue_rte(folder: Path, rows: int = 8) -> None:
    """GLUE-format RTE ``train.tsv`` and ``dev.tsv`` of ``rows`` pairs each."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    for split in ("train", "dev"):
        lines = ["index\tsentence1\tsentence2\tlabel"]
        for i in range(rows):
            s1 = " ".join(rng.choice(WORDS) for _ in range(8))
            s2 = " ".join(rng.choice(WORDS) for _ in range(5))
            lines.append(f"{i}\t{s1}\t{s2}\t{rng.choice(['entailment', 'not_entailment'])}")
        (folder / f"{split}.tsv").write_text("\n".join(lines) + "\n")


#: Configurations per synthetic LTS set.
LTS_CONFIGS = 2


def write_lts(folder: Path) -> None:
    """Two small decoders per LTS set (the set's fixed fields, depth 2, width 64), with made-up perplexities."""
    import yaml

    from tfnas.spaces.lts_gpt2 import CHOICES, SETS

    for which, name in SETS.items():
        root = folder / name
        ppl = {}
        for j in range(LTS_CONFIGS):
            cfg = {**CHOICES[which].fixed, "n_layer": 2, "d_model": 128, "d_embed": CHOICES[which].d_embed[0],
                   "div_val": 4, "n_head": [2, 4], "d_inner": [512 + j, 600]}
            (root / "config_0" / f"j{j}").mkdir(parents=True, exist_ok=True)
            (root / "config_0" / f"j{j}" / "model_config.yaml").write_text(yaml.safe_dump(cfg))
            ppl[f"config_0_j{j}"] = {"valid_ppl": 50.0 + j, "test_ppl": 51.0 + j, "train_elapsed": 1.0}
        (root / "ppl_summary.yaml").write_text(yaml.safe_dump(ppl))
        (root / "params_summary.yaml").write_text(yaml.safe_dump({}))


def make_data_dir(root: Path) -> Path:
    """Write the synthetic data folder under ``root`` (see the module docstring) and return ``root``."""
    ptb = root / "ptb"
    ptb.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", 20_000, 0), ("valid", 5_000, 1), ("test", 5_000, 2)):
        _ptb_split(ptb / f"ptb.{split}.txt", n, seed)
    write_nlp_zip(root / "nasbench_nlp" / "train_logs_wikitext-2.zip")
    (root / "nasbench_nlp" / "recepies_example.json").write_text(json.dumps(NLP_RECIPES))
    write_bert(root / "nasbench_bert")
    write_vocab(root / "tokenizers" / "bert-base-uncased")
    write_glue_rte(root / "glue" / "RTE")
    write_lts(root / "lts" / "saved_logs")
    return root
