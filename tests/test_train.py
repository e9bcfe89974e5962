"""Ground-truth training (docs/SPACES.md §1, NAS-Bench-NLP protocol) on the real PTB files, tiny models.

Covers: the AWD loss against a hand computation, the variable BPTT rule and
the per-step learning-rate scaling, in-order windows with a carried and
detached hidden state, exact resume from a mid-run checkpoint, and the
record of a diverging recipe in a sweep that continues.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

import tfnas.hydra_support  # noqa: F401  (registers the tfnas_job resolver)
from tfnas import results
from tfnas.data.ptb import load_corpus
from tfnas.schema import ConfigError
from tfnas.data.ptb_datamodule import PTBDataModule, TBPTTWindowSampler, draw_seq_len, train_window_plan
from tfnas.spaces.nasbench_nlp.space import NasBenchNLP
from tfnas.systems.language_model import LanguageModelSystem, NAN_STATUS
from tfnas.tasks import train as train_task
from tfnas.tasks.score import sweep_settings

CONF = Path(__file__).resolve().parents[1] / "conf"
TINY = [
    "space.model.emsize=8",
    "space.model.nhid=8",
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=1",
    "train_eval_batches=1",
    "eval_initial=false",
    "metrics.names=[num_params,hidden_covariance]",
    "logger=none",
    "threads=1",
]
LSTM_ARCH = 1  # recepies_example.json and the WikiText-2 logs both have the LSTM at index 1


def _compose(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=overrides)


def _paths(tmp: Path, data_dir: Path) -> list[str]:
    return [f"paths.data_dir={data_dir}", f"paths.results_dir={tmp / 'results'}", f"paths.log_dir={tmp / 'logs'}"]


# --------------------------------------------------------------------------- a short fit, spied on


@pytest.fixture(scope="module")
def spied_fit(data_dir):
    """Two epochs of three windows of a tiny LSTM LM; every training forward and optimizer step recorded."""
    torch.set_num_threads(1)
    space = NasBenchNLP(data_dir / "nasbench_nlp" / "recepies_example.json")
    corpus = load_corpus(data_dir, source="local")
    dm = PTBDataModule(corpus=corpus, batch_size=4, eval_batch_size=5, bptt=12, eval_bptt=12, seed=3)
    model = space.build(space[LSTM_ARCH], seed=0, ntoken=corpus.ntoken, emsize=8, nhid=8,
                        dropout=0.3, dropouth=0.25, dropouti=0.4, dropoute=0.1, wdrop=0.2)
    system = LanguageModelSystem(model, lr=1e-3, wdecay=1.2e-6, clip=0.25, alpha=2.0, beta=1.0, bptt=12,
                                 seed=0, eval_initial=False)
    rec = {"forward": [], "lr_at_step": [], "lr_after_step": [], "loss": [], "ce": []}
    real_forward = model.forward

    def forward(tokens, hidden=None, decode=True):
        out = real_forward(tokens, hidden, decode)
        if model.training:
            rec["forward"].append({"x": tokens.clone(), "hidden_in": hidden, "out": out})
        return out

    model.forward = forward

    class Steps(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            rec["loss"].append(pl_module.last_loss)
            rec["ce"].append(pl_module.last_ce)
            rec["lr_after_step"].append(pl_module.optimizers().optimizer.param_groups[0]["lr"])
            rec.setdefault("batches", []).append({k: batch[k] for k in ("start", "seq_len")} | {"y": batch["y"]})
            rec.setdefault("epoch", []).append(trainer.current_epoch)

    real_step = torch.optim.Adam.step

    def step(self, *a, **k):
        rec["lr_at_step"].append(self.param_groups[0]["lr"])
        return real_step(self, *a, **k)

    torch.optim.Adam.step = step
    try:
        trainer = pl.Trainer(max_epochs=2, limit_train_batches=3, limit_val_batches=1, logger=False,
                             enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                             num_sanity_val_steps=0, accelerator="cpu", callbacks=[Steps()])
        trainer.fit(system, datamodule=dm)
    finally:
        torch.optim.Adam.step = real_step
    return system, dm, rec


def test_step_loss_is_cross_entropy_plus_ar_plus_tar(spied_fit):
    system, _, rec = spied_fit
    for k in range(len(rec["loss"])):
        out, x = rec["forward"][k]["out"], rec["forward"][k]["x"]
        y = rec["batches"][k]["y"]
        # the dropped and raw outputs differ, so using the wrong one for AR or TAR would show
        assert not torch.allclose(out.output, out.raw_output)
        logits = out.logits.detach().double()
        logz = torch.logsumexp(logits, dim=-1)
        picked = torch.gather(logits, -1, y.unsqueeze(-1)).squeeze(-1)
        ce = (logz - picked).sum() / y.numel()
        ar = 2.0 * (out.output.detach().double() ** 2).sum() / out.output.numel()
        raw = out.raw_output.detach().double()
        diff = raw[1:] - raw[:-1]
        tar = 1.0 * (diff**2).sum() / diff.numel()
        assert rec["ce"][k] == pytest.approx(ce.item(), rel=1e-5)
        assert rec["loss"][k] == pytest.approx((ce + ar + tar).item(), rel=1e-5)
        assert x.shape[0] == rec["batches"][k]["seq_len"]


def test_lr_is_scaled_by_seq_len_for_that_step_only(spied_fit):
    _, _, rec = spied_fit
    seq = [b["seq_len"] for b in rec["batches"]]
    assert len(set(seq)) > 1  # the lengths vary, so a constant lr would fail
    assert rec["lr_at_step"] == pytest.approx([1e-3 * s / 12 for s in seq], rel=1e-12)
    assert rec["lr_after_step"] == pytest.approx([1e-3] * len(seq))


def test_windows_are_contiguous_and_in_order(spied_fit):
    _, dm, rec = spied_fit
    for epoch in (0, 1):
        ks = [k for k, e in enumerate(rec["epoch"]) if e == epoch]
        starts = [rec["batches"][k]["start"] for k in ks]
        lens = [rec["batches"][k]["seq_len"] for k in ks]
        assert starts[0] == 0
        assert starts[1:] == list(np.cumsum(lens)[:-1])
        stream = torch.cat([rec["forward"][k]["x"] for k in ks])
        assert torch.equal(stream, dm.train_data[: stream.size(0)])
        targets = torch.cat([rec["batches"][k]["y"] for k in ks])
        assert torch.equal(targets, dm.train_data[1 : stream.size(0) + 1])
    # each epoch draws its own plan from (seed, epoch)
    first = [rec["batches"][k]["seq_len"] for k, e in enumerate(rec["epoch"]) if e == 0]
    second = [rec["batches"][k]["seq_len"] for k, e in enumerate(rec["epoch"]) if e == 1]
    assert first == [s for _, s in dm.sampler.plan(0)[:3]]
    assert second == [s for _, s in dm.sampler.plan(1)[:3]]


def test_hidden_state_is_carried_detached_and_reset_each_epoch(spied_fit):
    _, _, rec = spied_fit
    for k, e in enumerate(rec["epoch"]):
        h_in = rec["forward"][k]["hidden_in"]
        if k == 0 or rec["epoch"][k - 1] != e:  # epoch start: zeros
            assert all(torch.count_nonzero(t) == 0 for layer in h_in for t in layer)
            continue
        prev = rec["forward"][k - 1]["out"].hidden
        assert len(h_in) == len(prev) == 3
        for layer_in, layer_prev in zip(h_in, prev):
            assert len(layer_in) == len(layer_prev) == 2  # the LSTM's (h, c)
            for a, b in zip(layer_in, layer_prev):
                assert b.requires_grad and not a.requires_grad and a.grad_fn is None
                assert torch.equal(a, b.detach())
                assert torch.count_nonzero(a) > 0


# --------------------------------------------------------------------------- window rule


def test_seq_len_rule_reproduces_awd_draws_and_distribution():
    rng = np.random.default_rng(123)
    lens = np.array([draw_seq_len(rng, 70) for _ in range(20000)])
    # AWD-LSTM: base 70 w.p. 0.95 else 35, int(N(base, 5)) floored at 5; two draws per length
    ref = np.random.default_rng(123)
    expected = []
    for _ in range(20000):
        base = 70 if ref.random() < 0.95 else 35.0
        expected.append(max(5, int(ref.normal(base, 5))))
    assert lens.tolist() == expected
    long = lens > 52  # the two modes are 7 sd apart
    assert abs(long.mean() - 0.95) < 0.01
    assert abs(lens[long].mean() - 69.5) < 0.2  # int() truncates: E[int(N(70, 5))] = 69.5
    assert abs(lens[~long].mean() - 34.5) < 0.5
    small = np.array([draw_seq_len(rng, 6) for _ in range(5000)])
    assert small.min() == 5 and (small == 5).mean() > 0.3  # the floor binds


def test_window_plan_covers_the_split_in_order():
    plan = train_window_plan(1000, 70, np.random.default_rng(0))
    starts = [s for s, _ in plan]
    assert starts[0] == 0 and all(b == a + n for (a, n), b in zip(plan, starts[1:]))
    assert starts[-1] < 1000 - 2 <= starts[-1] + plan[-1][1]
    sampler = TBPTTWindowSampler(1000, 70, seed=5)
    assert sampler.plan(0) == sampler.plan(0) and sampler.plan(0) != sampler.plan(1)
    sampler.set_epoch(1)
    assert list(sampler) == sampler.plan(1)
    assert train_window_plan(1000, 70, None) == [(i, 70) for i in range(0, 998, 70)]


def test_hparams_come_from_the_log_then_the_defaults():
    defaults = {k: 0.5 for k in train_task.HPARAM_KEYS}
    values, sources = train_task.resolve_hparams({"lr": 0.01}, defaults, {"lr": 1e-3, "wdrop": 0.1})
    assert values["lr"] == 0.01 and sources["lr"] == "config"
    assert values["wdrop"] == 0.1 and sources["wdrop"] == "log"
    assert values["dropout"] == 0.5 and sources["dropout"] == "default"
    with pytest.raises(ValueError, match="unknown hparams"):
        train_task.resolve_hparams({"lrr": 1.0}, defaults, {})


# --------------------------------------------------------------------------- through train(cfg)


def test_resume_from_mid_run_checkpoint_gives_the_same_final_loss(tmp_path, data_dir):
    base = TINY + [f"arch={LSTM_ARCH}"]
    a = train_task.train(_compose(base + _paths(tmp_path / "a", data_dir)))
    assert a["ok"] == 1
    rec_a = results.load(a["record"])
    assert rec_a["source"] == "train" and rec_a["truth"]["status"] == "OK" and rec_a["truth"]["epochs"] == 2
    assert math.isfinite(rec_a["scores"]["hidden_covariance_l1"])
    assert rec_a["extra"]["hparam_sources"]["lr"] == "log"  # the WikiText-2 log of the LSTM
    cfg_b = _compose(base + _paths(tmp_path / "b", data_dir))
    # an interrupted run of the same command: its folder holds only the checkpoint after epoch 1
    run_a = Path(rec_a["extra"]["checkpoint_dir"])
    run_b = train_task.run_dir(cfg_b, "nasbench_nlp", LSTM_ARCH, rec_a["config_hash"])
    run_b.mkdir(parents=True)
    shutil.copy(run_a / "epoch000.ckpt", run_b / "last.ckpt")
    b = train_task.train(cfg_b)
    rec_b = results.load(b["record"])
    assert rec_b["extra"]["resumed_from"] == str(run_b / "last.ckpt")
    assert rec_b["config_hash"] == rec_a["config_hash"]
    for key in ("test_loss", "val_loss", "train_loss"):
        assert rec_b["truth"][key] == pytest.approx(rec_a["truth"][key], rel=1e-6, abs=0)
    for key in ("train_loss", "val_loss", "test_loss"):
        assert rec_b["extra"]["curves"][key] == pytest.approx(rec_a["extra"]["curves"][key], rel=1e-6)
    assert rec_b["scores"] == rec_a["scores"]  # carried by the checkpoint, not recomputed on trained weights
    # training changed the loss, so equality above is not trivial
    assert rec_a["extra"]["curves"]["test_loss"][0] != rec_a["extra"]["curves"]["test_loss"][1]
    # the hash covers training: a score record of the same architecture lives elsewhere
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        score_cfg = compose("score", overrides=[f"paths.data_dir={data_dir}", "metrics.names=[num_params,hidden_covariance]",
                                                "space.model.emsize=8", "space.model.nhid=8"])
    from hydra.utils import instantiate
    s_hash = results.config_hash(dict(sweep_settings(score_cfg, instantiate(score_cfg.space), instantiate(score_cfg.data)),
                                      arch=LSTM_ARCH))
    assert s_hash != rec_a["config_hash"]
    # re-running the finished command skips it
    again = train_task.train(cfg_b)
    assert again["skipped"] == 1 and again["truth"]["test_loss"] == rec_b["truth"]["test_loss"]


def test_diverging_recipe_is_recorded_and_the_sweep_continues(tmp_path, data_dir):
    lstm = json.loads(Path(data_dir / "nasbench_nlp" / "recepies_example.json").read_text())[1]
    # h_t = W·[x, h_{t-1}] + b + h_{t-1}²: no fixed point once b > 1/4, the state overflows to inf and NaN
    blowup = {"a": {"op": "linear", "input": ["x", "h_prev_0"]},
              "sq": {"op": "elementwise_prod", "input": ["h_prev_0", "h_prev_0"]},
              "h_new_0": {"op": "elementwise_sum", "input": ["a", "sq"]}}
    recipes = tmp_path / "recipes.json"
    recipes.write_text(json.dumps([blowup, lstm]))
    common = TINY + _paths(tmp_path, data_dir) + [f"space.benchmark={recipes}"]
    out = [train_task.train(_compose(common + [f"arch={i}"])) for i in (0, 1)]
    bad, good = (results.load(o["record"]) for o in out)
    assert bad["status"] == "ok" and bad["error"] is None
    assert bad["truth"]["status"] == NAN_STATUS
    assert math.isnan(bad["truth"]["test_loss"]) and math.isnan(bad["truth"]["test_ppl"])
    assert bad["extra"]["failed_training"] is True
    assert good["status"] == "ok" and good["truth"]["status"] == "OK" and good["extra"]["failed_training"] is False
    assert math.isfinite(good["truth"]["test_loss"])
    assert good["truth"]["test_ppl"] == pytest.approx(math.exp(good["truth"]["test_loss"]))
    assert good["extra"]["hparam_sources"]["lr"] == "default"  # a recipe list has no log
    # any other failure is an error record, not an exception: here a checkpoint file that is none
    (tmp_path / "broken.ckpt").write_bytes(b"not a checkpoint")
    err = train_task.train(_compose(common + ["arch=1", "overwrite=true", f"ckpt_path={tmp_path / 'broken.ckpt'}"]))
    assert err["error"] == 1
    rec = results.load(err["record"])
    assert rec["status"] == "error" and rec["error"] and rec["truth"] == {}
    # a ckpt_path that names no file is the run's mistake: it stops before any work, no record
    with pytest.raises(ConfigError, match="^ckpt_path=.*missing.ckpt: no such checkpoint file$"):
        train_task.train(_compose(common + ["arch=1", "overwrite=true", f"ckpt_path={tmp_path / 'missing.ckpt'}"]))
    assert results.load(err["record"])["error"] == rec["error"]


def test_unknown_metric_spaces_are_not_implemented(monkeypatch, data_dir):
    class FakeSpace:
        name, family = "nasbench_cnn", "cnn"

    monkeypatch.setattr(train_task, "instantiate", lambda *a, **k: FakeSpace())
    with pytest.raises(NotImplementedError, match="nasbench_cnn"):
        train_task.train(_compose(TINY + [f"paths.data_dir={data_dir}"]))
