"""ELECTRA pretraining: masking, replaced-token labels, the loss, tied embeddings, optimisation, data."""

import math

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from tfnas.data.pretraining import PretrainingDataModule, collate_rows, pack_token_ids
from tfnas.models.electra import (
    ElectraPretrainingModel,
    apply_mask,
    corrupt,
    generator_config,
    generator_layers,
    replaced_token_labels,
    select_positions,
)
from tfnas.models.flexibert import FlexiBertConfig
from tfnas.spaces.nasbench_bert.space import NasBenchBERT, model_config
from tfnas.systems.electra import ElectraPretrainingSystem, decay_param_groups, make_scheduler

CLS, SEP, MASK, PAD = 2, 3, 4, 0
SPECIAL = (CLS, SEP, MASK, PAD)
V = 40


def layer(op, param, heads=2, ffn=32, n=1):
    return {"operation_type": op, "operation_parameter": param, "num_operation_heads": heads,
            "feed_forward_dimension": ffn, "num_feed_forward": n}


def tiny_config(layers=None, hidden=16):
    layers = layers or [layer("SA", "SDP", 4), layer("DSC", 5, 2), layer("LT", "DFT", 2)]
    return FlexiBertConfig(vocab_size=V, embedding_size=8, hidden_size=hidden, max_position_embeddings=64,
                           layers=layers)


def tiny_model(**kw):
    torch.manual_seed(0)
    return ElectraPretrainingModel(tiny_config(), SPECIAL, MASK, **kw)


def batch_of(rows, lengths=None, seq=20, seed=0):
    """[CLS] random ids [SEP] then padding to `seq` (lengths include the two special tokens)."""
    g = torch.Generator().manual_seed(seed)
    lengths = lengths or [seq] * rows
    ids = torch.full((rows, seq), PAD, dtype=torch.long)
    mask = torch.zeros(rows, seq, dtype=torch.long)
    for r, n in enumerate(lengths):
        ids[r, 0], ids[r, n - 1] = CLS, SEP
        ids[r, 1 : n - 1] = torch.randint(5, V, (n - 2,), generator=g)
        mask[r, :n] = 1
    return ids, mask


# ---------------------------------------------------------------------------- generator size
def test_generator_layers_quarter_size_and_dsc_needs_even_heads():
    layers = [layer("SA", "WMA", 4, 1024, 3), layer("SA", "SDP", 2, 512), layer("DSC", 9, 4, 512), layer("DSC", 5, 2),
              layer("LT", "DCT", 2, 1024)]
    gen = generator_layers(layers)
    assert [g["num_operation_heads"] for g in gen] == [1, 1, 2, 2, 1]  # max(1, h/4); DSC: nearest even (2)
    assert [g["feed_forward_dimension"] for g in gen] == [256, 128, 128, 8, 256]
    assert [g["num_feed_forward"] for g in gen] == [3, 1, 1, 1, 1]
    assert [g["operation_parameter"] for g in gen] == ["WMA", "SDP", 9, 5, "DCT"]
    assert layers[0]["num_operation_heads"] == 4  # inputs untouched
    cfg = generator_config(FlexiBertConfig(hidden_size=256, layers=layers))
    assert cfg.hidden_size == 64 and cfg.embedding_size == 128 and cfg.layers == gen
    with pytest.raises(ValueError, match="generator size"):
        generator_layers(layers, 0.0)
    with pytest.raises(ValueError, match="not a positive integer"):
        generator_config(FlexiBertConfig(hidden_size=18, layers=[layer("SA", "SDP", 2)]))


# ---------------------------------------------------------------------------- masking
def test_masking_rate_is_15_percent_and_specials_are_never_masked():
    lengths = [128] * 40 + [100] * 20 + [37] * 20
    ids, mask = batch_of(len(lengths), lengths, seq=128, seed=1)
    ids[:, 5] = MASK  # a [MASK] already in the text must not be drawn either
    g = torch.Generator().manual_seed(0)
    sel = select_positions(ids, mask, SPECIAL, 0.15, generator=g)
    for r, n in enumerate(lengths):
        assert int(sel[r].sum()) == max(1, round(0.15 * n)), r  # ELECTRA: round(0.15 * real tokens) per row
    special = (ids == CLS) | (ids == SEP) | (ids == MASK) | (ids == PAD)
    assert not (sel & special).any() and not (sel & (mask == 0)).any()
    rate = sel.sum().item() / mask.sum().item()
    assert 0.145 < rate < 0.155
    # Every candidate position is drawn about equally often (uniform without replacement).
    counts = torch.zeros(128)
    for s in range(200):
        counts += select_positions(ids[:40], mask[:40], SPECIAL, 0.15, torch.Generator().manual_seed(s)).sum(0)
    inner = counts[torch.tensor([i for i in range(1, 127) if i != 5])]
    assert counts[0] == counts[5] == counts[127] == 0
    expected = 200 * 40 * 19 / 125
    assert inner.min() > 0.8 * expected and inner.max() < 1.2 * expected
    # 85 % of the drawn positions show [MASK]; the rest keep their token; nothing else changes.
    masked = apply_mask(ids, sel, MASK, 0.85, generator=torch.Generator().manual_seed(3))
    assert torch.equal(masked[~sel], ids[~sel])
    share = (masked[sel] == MASK).float().mean().item()
    assert 0.80 < share < 0.90
    kept = sel & (masked != MASK)
    assert torch.equal(masked[kept], ids[kept])


# ---------------------------------------------------------------------------- replaced-token labels
def test_replaced_token_labels_on_a_hand_made_batch():
    original = torch.tensor([[CLS, 10, 11, 12, 13, SEP], [CLS, 20, 21, 22, SEP, PAD]])
    selected = torch.tensor([[0, 1, 1, 0, 1, 0], [0, 0, 1, 1, 0, 0]], dtype=torch.bool)
    sampled = torch.tensor([10, 30, 31, 21, 23])  # row 0: same, new, new; row 1: same-as-another-token, new
    corrupted = corrupt(original, selected, sampled)
    assert corrupted.tolist() == [[CLS, 10, 30, 12, 31, SEP], [CLS, 20, 21, 23, SEP, PAD]]
    labels = replaced_token_labels(original, corrupted, selected)
    # Position (0,1): the sample equals the original -> "original" (0). (1,2): 21 sampled where 21 stood -> 0.
    assert labels.tolist() == [[0, 0, 1, 0, 1, 0], [0, 0, 0, 1, 0, 0]]
    with pytest.raises(ValueError, match="sampled tokens"):
        corrupt(original, selected, sampled[:3])


def test_model_labels_follow_the_generator_samples():
    """Force the generator to sample token 7: labels are 1 exactly where a drawn position did not hold 7."""
    model = tiny_model().eval()
    with torch.no_grad():
        model.generator_head.bias[7] = 1e4  # softmax mass ~1 on token 7
    ids, mask = batch_of(6, [20, 20, 15, 12, 20, 9], seq=20, seed=4)
    ids[:, 1:-1:2] = torch.where(mask[:, 1:-1:2].bool() & (ids[:, 1:-1:2] != SEP), 7, ids[:, 1:-1:2])
    out = model(ids, mask, generator=torch.Generator().manual_seed(5))
    sel = out.selected
    assert torch.equal(out.corrupted_ids[sel], torch.full((int(sel.sum()),), 7))
    assert torch.equal(out.corrupted_ids[~sel], ids[~sel])
    assert torch.equal(out.labels, (sel & (ids != 7)).float())
    # Both cases occur: drawn positions that held 7 (label 0) and ones that did not (label 1).
    assert (sel & (ids == 7)).any() and out.labels.sum() > 0
    assert torch.equal(out.targets, ids[sel])


# ---------------------------------------------------------------------------- the loss
def test_loss_is_mlm_plus_50_times_discriminator_loss_computed_independently():
    model = tiny_model().eval()  # no dropout, so the encoders can be re-run
    ids, mask = batch_of(4, [20, 18, 11, 20], seq=20, seed=6)
    out = model(ids, mask, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        # Generator reads the masked ids; its logits at the drawn positions, by hand.
        gh = model.generator(out.masked_ids, mask).last_hidden_state[out.selected]
        head = model.generator_head
        h = torch.nn.functional.layer_norm(torch.nn.functional.gelu(gh @ head.dense.weight.T + head.dense.bias),
                                           (8,), head.LayerNorm.weight, head.LayerNorm.bias, 1e-12)
        logits = (h @ model.discriminator.embeddings.word_embeddings.weight.T + head.bias).double().numpy()
        # Discriminator reads the corrupted ids.
        dh = model.discriminator(out.corrupted_ids, mask).last_hidden_state
        d = model.discriminator_head
        z = (torch.nn.functional.gelu(dh @ d.dense.weight.T + d.dense.bias) @ d.out.weight.T + d.out.bias)
        z = z.squeeze(-1).double().numpy()
    np.testing.assert_allclose(out.mlm_logits.detach().double().numpy(), logits, rtol=1e-5, atol=1e-5)
    t = ids[out.selected].numpy()
    log_softmax = logits - logits.max(1, keepdims=True)
    log_softmax = log_softmax - np.log(np.exp(log_softmax).sum(1, keepdims=True))
    mlm = -log_softmax[np.arange(len(t)), t].mean()
    y, w = out.labels.double().numpy(), mask.double().numpy()
    sig = 1 / (1 + np.exp(-z))
    disc = -(w * (y * np.log(sig) + (1 - y) * np.log(1 - sig))).sum() / w.sum()
    assert out.mlm_loss.item() == pytest.approx(mlm, rel=1e-5)
    assert out.disc_loss.item() == pytest.approx(disc, rel=1e-5)
    assert out.loss.item() == pytest.approx(mlm + 50 * disc, rel=1e-5)


# ---------------------------------------------------------------------------- tied embeddings
def test_generator_and_discriminator_share_one_embedding_tensor():
    model = tiny_model()
    word = model.discriminator.embeddings.word_embeddings.weight
    assert model.generator.embeddings.word_embeddings.weight is word
    assert model.generator_head.word_embeddings.weight is word  # the MLM decoder
    assert model.generator.embeddings is model.discriminator.embeddings  # positions, types, LayerNorm too
    assert sum(p is word for p in model.parameters()) == 1
    # The generator has its own E -> H/4 projection and layers.
    assert model.generator.config.hidden_size == 4 and model.generator.embeddings_project.out_features == 4
    # One optimizer step moves the single tensor: both encoders still read the same values.
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    ids, mask = batch_of(2, seq=12)
    before = word.detach().clone()
    model(ids, mask).loss.backward()
    assert word.grad is not None and word.grad.abs().sum() > 0
    opt.step()
    assert not torch.equal(before, word)
    assert model.generator.embeddings.word_embeddings.weight.data_ptr() == word.data_ptr()


# ---------------------------------------------------------------------------- optimisation
def test_weight_decay_groups_and_schedule():
    model = tiny_model()
    groups = decay_param_groups(model, 0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = [names[id(p)] for p in groups[0]["params"]]
    exempt = [names[id(p)] for p in groups[1]["params"]]
    assert groups[0]["weight_decay"] == 0.01 and groups[1]["weight_decay"] == 0.0
    assert all(n.endswith("bias") or "LayerNorm" in n for n in exempt)
    assert not any(n.endswith("bias") or "LayerNorm" in n for n in decayed)
    assert "discriminator.embeddings.word_embeddings.weight" in decayed
    assert len(decayed) + len(exempt) == len(list(model.parameters()))
    opt = torch.optim.AdamW(groups, lr=5e-4)
    sched = make_scheduler(opt, 10, 100, "linear")
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == 0.0 and lrs[5] == pytest.approx(2.5e-4) and lrs[10] == pytest.approx(5e-4)
    assert lrs[55] == pytest.approx(5e-4 * 45 / 90) and opt.param_groups[0]["lr"] == pytest.approx(0.0)
    opt2 = torch.optim.AdamW(decay_param_groups(model, 0.01), lr=5e-4)
    sched2 = make_scheduler(opt2, 10, 100, "electra")
    for _ in range(10):
        opt2.step()
        sched2.step()
    assert opt2.param_groups[0]["lr"] == pytest.approx(5e-4 * 0.9)  # ELECTRA: (1 - t/T) * min(1, t/W)


# ---------------------------------------------------------------------------- data
def test_packing_and_ptb_rows(data_dir, tmp_path):
    rows = pack_token_ids([[5, 6, 7], [], [8, 9], [10, 11, 12, 13]], seq_len=5, cls_id=CLS, sep_id=SEP)
    assert rows == [[CLS, 5, 6, 7, SEP], [CLS, 8, 9, 10, SEP], [CLS, 11, 12, 13, SEP]]
    dm = PretrainingDataModule(source="file", data_dir=data_dir, path=data_dir / "ptb" / "ptb.valid.txt",
                               seq_len=64, batch_size=4, cache_dir=tmp_path)
    dm.setup()
    tok = dm.tokenizer
    stream = tok(" ".join((data_dir / "ptb" / "ptb.valid.txt").read_text().splitlines()[:1000]),
                 add_special_tokens=False, truncation=False, padding=False)["input_ids"]
    batch = next(iter(DataLoader(dm.train_set, batch_size=3, collate_fn=collate_rows)))
    ids = batch["input_ids"]
    assert ids.shape == (3, 64) and (ids[:, 0] == tok.cls_token_id).all() and (ids[:, -1] == tok.sep_token_id).all()
    assert ids[:, 1:-1].reshape(-1).tolist() == stream[: 3 * 62]  # consecutive pieces of the token stream
    assert batch["attention_mask"].all() and not batch["token_type_ids"].any()
    assert len(list(tmp_path.glob("packed_train_*.arrow"))) == 1  # cached by file + tokenizer + length
    assert dm.special_ids() == (tok.cls_token_id, tok.sep_token_id, tok.mask_token_id, tok.pad_token_id)


def test_openwebtext_without_network_fails_clearly(monkeypatch, data_dir, tmp_path):
    import datasets

    def offline(*a, **k):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    dm = PretrainingDataModule(source="openwebtext", data_dir=data_dir, cache_dir=tmp_path)
    with pytest.raises(RuntimeError, match="network access.*source=file"):
        dm.setup()


# ---------------------------------------------------------------------------- full size
def test_full_size_architecture_trains_one_step_and_matches_space_build():
    """Arch 0: 4 layers, H = 256 (the benchmark's largest kind), batch 2 x 128, one Lightning step."""
    space = NasBenchBERT()
    arch = space[0]
    assert arch.spec["hidden_size"] == 256 and len(arch.spec["layers"]) == 4
    pl.seed_everything(0, verbose=False)
    np.random.seed(0)
    torch.manual_seed(0)
    model = ElectraPretrainingModel(model_config(arch.spec), (101, 102, 103, 0), 103)
    reference = space.build(arch, seed=0)  # the scored model: same initial weights
    for (n, p), (m, q) in zip(model.discriminator.state_dict().items(), reference.state_dict().items()):
        assert n == m and torch.equal(p, q), n
    system = ElectraPretrainingSystem(model, max_steps=1, warmup_steps=0)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 30000, (2, 128), generator=g)
    ids[:, 0], ids[:, -1] = 101, 102
    loader = DataLoader([{"input_ids": r} for r in ids], batch_size=2, collate_fn=collate_rows)
    before = model.discriminator.encoder.layer[3].feed_forward.ffn[0].weight.detach().clone()
    trainer = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", gradient_clip_val=1.0)
    trainer.fit(system, train_dataloaders=loader)
    assert trainer.global_step == 1
    assert not torch.equal(before, model.discriminator.encoder.layer[3].feed_forward.ffn[0].weight)
    row = system.history[-1]
    assert math.isfinite(row["loss"]) and row["mlm_loss"] > 5  # ~ln(30522) = 10.3 untrained
    assert row["loss"] == pytest.approx(row["mlm_loss"] + 50 * row["disc_loss"], rel=1e-5)


def test_sampling_follows_the_generator_distribution():
    from tfnas.models.electra import sample_tokens

    logits = torch.tensor([[0.0, 1.0, 2.0, -50.0, 0.5]]).repeat(100_000, 1)
    s = sample_tokens(logits, generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(s, minlength=5).double() / len(s)
    p = torch.softmax(logits[0].double(), -1)
    assert torch.allclose(freq, p, atol=0.005) and freq[3] == 0
    hot = sample_tokens(logits[:10] / 0.01)  # temperature-like sharpening: always the argmax
    assert (hot == 2).all()


# ---------------------------------------------------------------------------- end to end
def _compose(tmp_path, overrides):
    from pathlib import Path

    from hydra import compose, initialize_config_dir

    import tfnas.hydra_support  # noqa: F401

    conf = Path(__file__).resolve().parents[1] / "conf"
    text = (conf / "train.yaml").read_text()
    wired = "- electra:" in text and "- glue:" in text
    groups = ["electra=default", "glue=default"] if wired else ["+electra=default", "+glue=default"]
    with initialize_config_dir(config_dir=str(conf), version_base="1.3", job_name="train"):
        return compose(config_name="train", overrides=[
            "space=nasbench_bert", "data=text_cpu", "metrics=nasbench_bert", *groups,
            f"paths.results_dir={tmp_path}/results", f"paths.log_dir={tmp_path}/logs", "logger=none", "threads=2",
            "metrics.names=[num_params]", "data.batch_size=2",
            "electra.data.source=file", "electra.data.path=${paths.data_dir}/ptb/ptb.valid.txt",
            "electra.data.batch_size=4", "electra.data.seq_len=32", "electra.optim.max_steps=3",
            "electra.optim.warmup_steps=1", "electra.checkpoint_every_n_steps=1", "electra.history_every=1",
            "glue.source=tsv", "glue.max_seq_len=32", "glue.limit_train_examples=32", "glue.limit_eval_examples=16",
            "glue.epochs=1", "glue.task_epochs={}", *overrides,
        ])


@pytest.mark.slow
def test_train_bert_end_to_end_resume_and_failure_isolation(tmp_path):
    """Pretrain arch 88 for 3 steps, fine-tune RTE (CoLA has no TSVs here: isolated error), rerun, skip."""
    from tfnas import results
    from tfnas.tasks.train_bert import train_bert

    cfg = _compose(tmp_path, ["arch=88", "glue.tasks=[rte,cola]"])
    out = train_bert(cfg)
    assert out["error"] == 1
    rec = results.load(out["record"])
    assert rec["status"] == "error" and "cola" in rec["error"] and rec["truth"] == {}
    assert rec["source"] == "train" and rec["space"] == "nasbench_bert" and rec["benchmark_id"] == "88"
    assert set(rec["extra"]["task_errors"]) == {"cola"} and rec["extra"]["tasks_run"] == ["rte"]
    rte = rec["extra"]["finetune"]["rte"]
    assert rec["extra"]["partial_truth"] == {"rte": rte["score"], "glue": rte["score"]}
    assert rte["n_train"] == 32 and rte["n_dev"] == 16
    assert rte["score"] * 16 / 100 == pytest.approx(round(rte["score"] * 16 / 100))  # a share of 16 dev examples
    space = NasBenchBERT()
    assert rec["scores"]["num_params"] == space.num_params(space[88])  # initial scores are the discriminator's
    pre = rec["extra"]["pretrain"]
    assert pre["steps"] == 3 and [r["step"] for r in pre["history"]] == [1, 2, 3]
    folder = tmp_path / "logs" / "train" / "checkpoints" / "nasbench_bert"
    (run,) = folder.iterdir()
    assert (run / "pretrain" / "last.ckpt").is_file() and (run / "discriminator" / "config.json").is_file()
    stamp = (run / "pretrain.json").stat().st_mtime_ns

    # Only RTE: a new record, the same pretraining (not redone) and the finished RTE result reused.
    cfg2 = _compose(tmp_path, ["arch=88", "glue.tasks=[rte]"])
    out2 = train_bert(cfg2)
    assert out2["ok"] == 1 and out2["record"] != out["record"]
    rec2 = results.load(out2["record"])
    assert rec2["truth"] == {"rte": rte["score"], "glue": rte["score"]} and rec2["extra"]["glue_tasks"] == ["rte"]
    assert (run / "pretrain.json").stat().st_mtime_ns == stamp
    assert rec2["extra"]["finetune"]["rte"]["seconds"] == rte["seconds"]  # loaded, not re-run
    assert train_bert(cfg2)["skipped"] == 1  # an ok record: the job is skipped
