"""Causal-LM training of the decoders: LTS's ordered windows and rolls, its schedule, a short Lightning run."""

import math
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from tfnas.data.causal_datamodule import CausalLMDataModule, EpochWindows, WindowDataset, batchify, roll_streams
from tfnas.data.causal_text import CausalTextScoringData
from tfnas.models.lts_gpt2 import LtsGpt2Config, LtsGpt2LMHeadModel
from tfnas.systems.causal_lm import CausalLMSystem, warmup_cosine


def test_batchify_and_windows_predict_the_next_token():
    stream = torch.arange(103)
    data = batchify(stream, 4)
    assert data.shape == (4, 25) and torch.equal(data[1], torch.arange(25, 50))
    ds = WindowDataset(data, tgt_len=10)
    assert len(ds) == 3  # 24 predictable positions per stream: windows of 10, 10, 4
    w = ds[2]
    assert torch.equal(w["input_ids"], data[:, 20:24]) and torch.equal(w["labels"], data[:, 21:25])
    for k in range(len(ds)):
        assert torch.equal(ds[k]["labels"], ds[k]["input_ids"] + 1)  # the stream is 0, 1, 2, ...
    with pytest.raises(ValueError, match="streams"):
        batchify(torch.arange(5), 4)


def test_roll_rotates_each_stream_and_is_seeded_per_epoch():
    data = batchify(torch.arange(400), 8)
    a = roll_streams(data, torch.Generator().manual_seed(1))
    for row, orig in zip(a, data):
        shift = int(row[0] - orig[0])
        assert torch.equal(row, torch.roll(orig, -shift))
    ds = WindowDataset(data, tgt_len=7, seed=3, roll=True)
    assert torch.equal(ds[(0, 1)]["input_ids"], WindowDataset(data, 7, seed=3, roll=True)[(0, 1)]["input_ids"])
    assert not torch.equal(ds[(0, 0)]["input_ids"], ds[(1, 0)]["input_ids"])
    sampler = EpochWindows(3)
    sampler.set_epoch(5)
    assert list(sampler) == [(5, 0), (5, 1), (5, 2)]


def test_warmup_cosine_is_lts_schedule():
    lr, eta = 0.01, 0.001
    assert warmup_cosine(0, 1000, 40000, lr, eta) == pytest.approx(lr / 1000)
    assert warmup_cosine(999, 1000, 40000, lr, eta) == pytest.approx(lr)
    assert warmup_cosine(1000, 1000, 40000, lr, eta) == pytest.approx(lr)
    assert warmup_cosine(1000 + 19500, 1000, 40000, lr, eta) == pytest.approx((lr + eta) / 2)
    assert warmup_cosine(40000, 1000, 40000, lr, eta) == pytest.approx(eta)
    assert warmup_cosine(50000, 1000, 40000, lr, eta) == pytest.approx(eta)


def tiny_model():
    cfg = LtsGpt2Config(n_token=50264, tgt_len=16, d_model=32, d_embed=32, n_layer=2, n_head=2, d_inner=64,
                        div_val=4, cutoffs=[2000, 10000], dropout=0.0)  # fmt: skip
    torch.manual_seed(0)
    return LtsGpt2LMHeadModel(cfg)


def test_short_training_lowers_the_held_out_loss(data_dir, tmp_path):
    text = CausalTextScoringData(data_dir=data_dir, tokenizer="gpt2")
    test = data_dir / "ptb" / "ptb.test.txt"
    # the PTB test split as the training text keeps the test fast; valid is held out
    dm = CausalLMDataModule(text, train_path=test, batch_size=8, tgt_len=16, eval_batch_size=4, eval_tgt_len=16)
    system = CausalLMSystem(tiny_model(), lr=0.003, optimizer="adam", warmup_steps=5, max_steps=40)
    trainer = pl.Trainer(max_steps=40, val_check_interval=40, limit_val_batches=10, gradient_clip_val=0.25,
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, accelerator="cpu",
                         default_root_dir=tmp_path)  # fmt: skip
    trainer.fit(system, datamodule=dm)
    assert system.initial["valid_loss"] > 10.0  # untrained: about ln V plus the adaptive softmax's split
    truth = system.ground_truth()
    assert truth["status"] == "OK" and truth["steps"] == 40
    assert truth["valid_loss"] < system.initial["valid_loss"] - 2.0
    assert truth["valid_ppl"] == pytest.approx(math.exp(truth["valid_loss"]))
    assert system.curves()["step"] == [40]
    lrs = [g["lr"] for g in trainer.optimizers[0].param_groups]
    assert lrs[0] == pytest.approx(warmup_cosine(40, 5, 40, 0.003, 0.001))


def test_checkpoint_state_round_trip():
    a = CausalLMSystem(tiny_model())
    a.history = [{"step": 10, "valid_loss": 5.0, "test_loss": 5.1, "train_loss": 5.5, "seconds": 1.0}]
    a.initial = {"valid_loss": 10.9, "test_loss": 10.8}
    ckpt = {}
    a.on_save_checkpoint(ckpt)
    b = CausalLMSystem(tiny_model())
    b.on_load_checkpoint(ckpt)
    assert b.history == a.history and b.initial == a.initial
    assert b.ground_truth()["valid_ppl"] == pytest.approx(math.exp(5.0))
    with pytest.raises(KeyError, match="tfnas"):
        b.on_load_checkpoint({})
    with pytest.raises(ValueError, match="optimizer"):
        CausalLMSystem(tiny_model(), optimizer="sgd")


def test_train_py_trains_a_decoder_writes_its_record_and_skips_it_next_time(data_dir, tmp_path):
    from hydra import compose, initialize_config_dir

    import tfnas.hydra_support  # noqa: F401  (resolvers)
    from tfnas import results
    from tfnas.tasks import train as train_task

    overrides = [
        "experiment=quick_gpt", f"paths.data_dir={data_dir}", f"paths.results_dir={tmp_path / 'results'}",
        f"paths.log_dir={tmp_path / 'logs'}", "causal_lm.data.batch_size=4", "causal_lm.data.tgt_len=16",
        "causal_lm.data.eval_batch_size=4", "causal_lm.data.eval_tgt_len=16", "causal_lm.optim.max_steps=6",
        "causal_lm.optim.warmup_steps=2", "causal_lm.trainer.val_check_interval=4", "causal_lm.trainer.limit_val_batches=2",
        "causal_lm.checkpoint_every_n_steps=3", "causal_lm.data.train_path=" + str(data_dir / "ptb" / "ptb.valid.txt"),
        "metrics.names=[num_params,head_confidence]", "data.batch_size=2", "data.seq_len=16", "logger=none", "threads=1",
    ]  # fmt: skip
    with initialize_config_dir(config_dir=str(Path(__file__).resolve().parents[1] / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    out = train_task.train(cfg)
    assert out["ok"] == 1, out
    rec = results.load(out["record"])
    assert rec["space"] == "lts_gpt2_wt103" and rec["arch"] == 93 and rec["source"] == "train"
    t = rec["truth"]
    assert t["status"] == "OK" and t["steps"] == 6 and t["valid_ppl"] == pytest.approx(math.exp(t["valid_loss"]))
    assert rec["extra"]["curves"]["step"] == [4, 6]  # every 4 steps, and the trained model at the end
    assert rec["extra"]["initial"]["valid_loss"] > t["valid_loss"]
    assert rec["scores"]["num_params"] == 3748692 and math.isfinite(rec["scores"]["head_confidence"])
    assert rec["extra"]["benchmark_truth"]["valid_ppl"] == pytest.approx(74.3, abs=0.05)
    assert rec["settings"]["data"]["tokenizer"] == "gpt2"
    assert train_task.train(cfg)["skipped"] == 1
