"""GLUE fine-tuning: metrics, layer-wise learning rates, the TSV reader and encoding, the GLUE score."""

import csv

import lightning.pytorch as pl
import numpy as np
import pytest
import scipy.stats
import torch

from tfnas.data.glue import (
    BENCHMARK_TASKS,
    GLUE_TASKS,
    GlueDataModule,
    GlueExample,
    encode_examples,
    get_task,
    read_glue_tsv,
)
from tfnas.data.text import load_tokenizer
from tfnas.models.flexibert import FlexiBertConfig, FlexiBertModel
from tfnas.systems.glue import ClassificationHead, GlueSystem, glue_metrics, layerwise_lr_groups
from tfnas.tasks.train_bert import glue_truth


def layer(op, param, heads=2, ffn=16, n=1):
    return {"operation_type": op, "operation_parameter": param, "num_operation_heads": heads,
            "feed_forward_dimension": ffn, "num_feed_forward": n}


def tiny_encoder(n_layers=3, vocab=30522):
    layers = [layer("SA", "SDP"), layer("DSC", 5), layer("LT", "DCT")][:n_layers]
    cfg = FlexiBertConfig(vocab_size=vocab, embedding_size=8, hidden_size=12, max_position_embeddings=128,
                          layers=layers)
    torch.manual_seed(0)
    return FlexiBertModel(cfg)


# ---------------------------------------------------------------------------- metrics
def test_metrics_match_direct_formulas_and_scipy():
    p = torch.tensor([1, 1, 0, 1, 0, 0, 1, 1, 0, 1, 1, 0])
    y = torch.tensor([1, 0, 0, 1, 0, 1, 1, 1, 0, 0, 1, 1])
    tp = int(((p == 1) & (y == 1)).sum())
    tn = int(((p == 0) & (y == 0)).sum())
    fp = int(((p == 1) & (y == 0)).sum())
    fn = int(((p == 0) & (y == 1)).sum())
    assert (tp, tn, fp, fn) == (5, 3, 2, 2)
    mcc = (tp * tn - fp * fn) / np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert glue_metrics("cola", p, y)["mcc"] == pytest.approx(mcc, abs=1e-6)
    m = glue_metrics("mrpc", p, y)
    assert m["accuracy"] == pytest.approx((tp + tn) / 12)
    assert m["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert set(glue_metrics("qqp", p, y)) == {"accuracy", "f1"} and set(glue_metrics("rte", p, y)) == {"accuracy"}
    # Three classes (MNLI): plain share correct.
    p3, y3 = torch.tensor([0, 1, 2, 2, 1, 0, 2]), torch.tensor([0, 2, 2, 2, 1, 1, 0])
    assert glue_metrics("mnli", p3, y3)["accuracy"] == pytest.approx(4 / 7)
    # STS-B: Spearman with ties (average ranks), as scipy.
    pred = torch.tensor([0.1, 0.4, 0.4, 0.9, 0.3, 0.75, 0.2, 0.4])
    gold = torch.tensor([0.0, 0.5, 0.2, 1.0, 0.2, 0.8, 0.2, 0.6])
    ref = scipy.stats.spearmanr(pred.numpy(), gold.numpy()).statistic
    assert glue_metrics("stsb", pred, gold)["spearman"] == pytest.approx(ref, abs=1e-6)
    with pytest.raises(ValueError):
        glue_metrics("rte", p, y[:3])


# ---------------------------------------------------------------------------- layer-wise learning rates
def test_layerwise_lr_decay_matches_the_spaces_formula():
    enc = tiny_encoder(3)
    head = ClassificationHead(12, 2)
    lr, decay, L = 3e-4, 0.8, 3
    groups = layerwise_lr_groups(enc, head, lr, decay, 0.01)
    lr_of = {id(p): (g["lr"], g["weight_decay"]) for g in groups for p in g["params"]}
    assert len(lr_of) == sum(1 for _ in enc.parameters()) + sum(1 for _ in head.parameters())
    for name, p in enc.named_parameters():
        if name.startswith("embeddings"):  # word/position/type tables, their LayerNorm and the E->H projection
            expected = lr * decay ** (L + 2)
        else:
            i = int(name.split(".")[2]) + 1  # 1 = bottom .. L = top
            expected = lr * decay ** (L + 2 - i)
        got, wd = lr_of[id(p)]
        assert got == pytest.approx(expected, rel=1e-12), name
        assert wd == (0.0 if name.endswith("bias") or "LayerNorm" in name else 0.01), name
    for name, p in head.named_parameters():
        assert lr_of[id(p)][0] == lr
    assert enc.embeddings_project is not None  # E = 8 != H = 12: the projection is in the embeddings' group
    assert lr_of[id(enc.embeddings_project.weight)][0] == pytest.approx(lr * 0.8**5)
    assert lr_of[id(enc.encoder.layer[2].feed_forward.ffn[0].weight)][0] == pytest.approx(lr * 0.8**2)


def test_glue_system_optimizer_uses_layerwise_rates_and_trains(data_dir):
    """One real fine-tuning epoch on the first 64 RTE examples: the optimizer's groups carry the rates."""
    enc = tiny_encoder(2)
    dm = GlueDataModule("rte", data_dir=data_dir, batch_size=16, eval_batch_size=32, max_seq_len=32,
                        limit_train_examples=64, limit_eval_examples=32)
    system = GlueSystem(enc, "rte", lr=3e-4)
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, accelerator="cpu")
    trainer.fit(system, datamodule=dm)
    groups = trainer.optimizers[0].param_groups
    by_name = {g["name"]: g["initial_lr"] for g in groups}  # peak rates (the schedule scales from these)
    assert by_name["head/decay"] == pytest.approx(3e-4)
    assert by_name["layer_2/decay"] == pytest.approx(3e-4 * 0.8**2)
    assert by_name["layer_1/decay"] == pytest.approx(3e-4 * 0.8**3)
    assert by_name["embeddings/decay"] == pytest.approx(3e-4 * 0.8**4)
    assert all(g["weight_decay"] == 0.0 for g in groups if g["name"].endswith("no_decay"))
    assert trainer.global_step == 4 and len(system.history) == 1
    acc = system.final()["accuracy"]
    assert 0.0 <= acc <= 1.0 and acc * 32 == pytest.approx(round(acc * 32))  # a share of the 32 dev examples


# ---------------------------------------------------------------------------- data
def _pandas_rows(path):
    import pandas as pd

    return pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, dtype=str, keep_default_na=False)


@pytest.mark.parametrize("folder, task, n_train, n_dev", [("RTE", "rte", 1244, 139), ("WNLI", "wnli", None, None)])
def test_tsv_reader_reads_rte_and_wnli(data_dir, folder, task, n_train, n_dev):
    t = get_task(task)
    for split, expected in (("train", n_train), ("dev", n_dev)):
        path = data_dir / "glue" / folder / f"{split}.tsv"
        ex = read_glue_tsv(path, t)
        ref = _pandas_rows(path)  # an independent reader of the same file
        assert len(ex) == len(ref)
        if expected is not None:
            assert len(ex) == expected
        assert [e.text_a for e in ex] == ref["sentence1"].tolist()
        assert [e.text_b for e in ex] == ref["sentence2"].tolist()
        assert [t.labels[e.label] for e in ex] == ref["label"].tolist()
    assert t.labels == (("entailment", "not_entailment") if task == "rte" else ("0", "1"))


def test_tsv_layouts_of_other_tasks(tmp_path):
    """CoLA (no header), MRPC, STS-B, MNLI column positions, on small files in GLUE's layouts."""
    (tmp_path / "cola.tsv").write_text(
        "gj04\t1\t\tOur friends won't buy this analysis.\nx\t0\t*\tThey drank the pub.\n"
    )
    cola = read_glue_tsv(tmp_path / "cola.tsv", "cola")
    assert [(e.text_a, e.text_b, e.label) for e in cola] == [("Our friends won't buy this analysis.", None, 1),
                                                              ("They drank the pub.", None, 0)]
    (tmp_path / "mrpc.tsv").write_text("Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t7\t8\tA \"q\" b.\tC d.\n")
    assert read_glue_tsv(tmp_path / "mrpc.tsv", "mrpc")[0] == GlueExample('A "q" b.', "C d.", 1)
    sts_row = "\t".join(["0", "main-captions", "MSRvid", "2012test", "0001", "none", "none", "A plane.",
                         "An air plane.", "4.800"])
    (tmp_path / "sts.tsv").write_text("h\n" + sts_row + "\n")
    e = read_glue_tsv(tmp_path / "sts.tsv", "sts")[0]
    assert (e.text_a, e.text_b, e.label) == ("A plane.", "An air plane.", 4.8)
    mnli_row = "\t".join(["0", "1", "2", "g", "(", "(", "p", "h", "The premise.", "The hypothesis.", "neutral",
                          "neutral"])
    (tmp_path / "mnli.tsv").write_text("h\n" + mnli_row + "\n")
    e = read_glue_tsv(tmp_path / "mnli.tsv", "mnli")[0]
    assert (e.text_a, e.text_b, e.label) == ("The premise.", "The hypothesis.", 1)
    (tmp_path / "bad.tsv").write_text("index\ts1\ts2\tlabel\n0\ta\tb\tmaybe\n")
    with pytest.raises(ValueError, match="bad.tsv:2.*unknown rte label 'maybe'"):
        read_glue_tsv(tmp_path / "bad.tsv", "rte")


def test_encoding_is_cls_a_sep_b_sep_padded(data_dir):
    tok = load_tokenizer(str(data_dir / "tokenizers" / "bert-base-uncased"))
    ex = read_glue_tsv(data_dir / "glue" / "RTE" / "dev.tsv", "rte")[:5]
    enc = encode_examples(ex, tok, max_seq_len=128)
    for i, e in enumerate(ex):
        item = enc[i]
        a = tok(e.text_a, add_special_tokens=False)["input_ids"]
        b = tok(e.text_b, add_special_tokens=False)["input_ids"]
        n = int(item["attention_mask"].sum())
        ids = item["input_ids"][:n].tolist()
        assert item["input_ids"].shape == (128,) and (item["input_ids"][n:] == tok.pad_token_id).all()
        assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
        if len(a) + len(b) + 3 <= 128:
            assert ids == [tok.cls_token_id, *a, tok.sep_token_id, *b, tok.sep_token_id]
            assert item["token_type_ids"][:n].tolist() == [0] * (len(a) + 2) + [1] * (len(b) + 1)
        else:  # longest segment truncated first
            assert n == 128
        assert int(item["labels"]) == e.label


def test_glue_score_is_the_mean_of_benchmark_tasks_run():
    res = {
        "rte": {"benchmark_key": "rte", "score": 60.0},
        "stsb": {"benchmark_key": "sts", "score": 80.0},
        "cola": {"benchmark_key": "cola", "score": 31.0},
        "wnli": {"benchmark_key": None, "score": 99.0},
    }
    truth, keys = glue_truth(res)
    assert keys == ["cola", "rte", "sts"]
    assert truth == {"cola": 31.0, "rte": 60.0, "sts": 80.0, "glue": pytest.approx((31 + 60 + 80) / 3)}
    assert glue_truth({"wnli": res["wnli"]}) == ({}, [])
    assert {GLUE_TASKS[t].benchmark_key for t in BENCHMARK_TASKS} == {"cola", "mnli", "mrpc", "qnli", "qqp", "rte",
                                                                     "sst", "sts"}
