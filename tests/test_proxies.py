"""The zero-cost proxies on both spaces: hand computations, shared passes, overflow, real data.

Every reference value is recomputed here with plain torch autograd on fresh
copies of the weights (and SynFlow / NASWOT / Zen from their definitions),
independently of :mod:`tfnas.scoring.proxies`.
"""

from __future__ import annotations

import copy
import json
import math
from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from tfnas.models.awd_lm import AWDLanguageModel
from tfnas.models.rnn_cell import CellCapture
from tfnas.models.flexibert import FlexiBertConfig, FlexiBertModel
from tfnas.paths import REPO_ROOT
from tfnas.scoring import engine
from tfnas.scoring.registry import available
from tfnas.scoring.rnn.proxies import layer_parameters, run_layers_with
from tfnas.scoring.scores import NaswotKernel
from tfnas.spaces.nasbench_nlp.recipe import Recipe

PROXIES = ["grad_norm", "snip", "grasp", "fisher", "synflow", "naswot", "zen"]
PASSES = ["proxy_loss", "proxy_loss_hvp", "proxy_codes", "proxy_synflow", "proxy_zen"]
VANILLA = {"f": {"op": "linear", "input": ["x", "h_prev_0"]}, "h_new_0": {"op": "activation_tanh", "input": ["f"]}}
ACTS = {
    "activation_tanh": torch.tanh,
    "activation_sigm": torch.sigmoid,
    "activation_leaky_relu": lambda t: F.leaky_relu(t, 0.01),
}
SEED = 3


def one_node_recipe(act: str) -> Recipe:
    return Recipe({"f": {"op": "linear", "input": ["x", "h_prev_0"]}, "h_new_0": {"op": act, "input": ["f"]}})


def tiny_lm(recipe=VANILLA, emb_scale=1.0, nlayers=2) -> AWDLanguageModel:
    torch.manual_seed(0)
    model = AWDLanguageModel(recipe if isinstance(recipe, Recipe) else Recipe(recipe), ntoken=23, emsize=6, nhid=7,
                             nlayers=nlayers).eval()
    with torch.no_grad():
        model.encoder.weight.mul_(emb_scale)  # larger inputs: codes that vary between sequences
    return model


def rnn_batch(seq=12, bsz=5):
    g = torch.Generator().manual_seed(7)
    return torch.randint(0, 23, (seq, bsz), generator=g), torch.randint(0, 23, (seq, bsz), generator=g)


# --------------------------------------------------------------------------- RNN reference


def fresh(t, dtype=None, abs_=False):
    t = t.detach().clone().to(dtype or t.dtype)
    return (t.abs() if abs_ else t).requires_grad_(True)


def lm_tensors(model, dtype=None, abs_=False):
    """Fresh leaf copies: per layer (W_x, W_h, b) of the one linear node "f"; E; decoder bias."""
    layers = [tuple(fresh(t, dtype, abs_) for t in (lay.weight("f", 0), lay.weight("f", 1), lay.node_bias("f")))
              for lay in model.layers]
    return layers, fresh(model.encoder.weight, dtype, abs_), fresh(model.decoder.bias, dtype, abs_)


def manual_rnn(layers, emb, act):
    """h_t = act(W_x x_t + W_h h_{t-1} + b) per layer, zero initial state; returns y and the pre-activations."""
    pre, inp = [], emb
    for wx, wh, b in layers:
        h = emb.new_zeros(emb.shape[1], wx.shape[0])
        outs, layer_pre = [], []
        for t in range(inp.shape[0]):
            a = inp[t] @ wx.T + h @ wh.T + b
            layer_pre.append(a)
            h = act(a)
            outs.append(h)
        pre.append(layer_pre)
        inp = torch.stack(outs)
    return inp, pre


def fisher_of(acts, grads):
    """Σ_units ½ mean_n (Σ_pos a g)² with acts/grads [n, pos, units]."""
    return sum(float((0.5 * (a.double() * g.double()).sum(1).square().mean(0)).sum()) for a, g in zip(acts, grads))


def codes_kernel(codes, valid=None):
    """K_ij = number of bits (valid for both) where codes i and j agree; codes [n, bits] bool."""
    eq = codes[:, None, :] == codes[None, :, :]
    if valid is not None:
        eq &= valid[:, None, :] & valid[None, :, :]
    return eq.sum(-1).double()


def rnn_reference(model, batch, act=torch.tanh, seed=SEED):
    x, y = batch
    layers, E, dec_b = lm_tensors(model)
    theta = [t for wx, wh, _ in layers for t in (wx, wh)] + [E]
    emb = E[x]
    out, pre = manual_rnn(layers, emb, act)
    logits = out @ E.T + dec_b
    loss = F.cross_entropy(logits.reshape(-1, 23), y.reshape(-1))
    flat_pre = [a for lp in pre for a in lp]
    grads = torch.autograd.grad(loss, theta + flat_pre + [logits], create_graph=True)
    g = grads[: len(theta)]
    hg = torch.autograd.grad(sum((gi.detach() * gi).sum() for gi in g), theta)
    ref = {
        "grad_norm": sum(float(gi.double().norm()) for gi in g),
        "snip": sum(float((t * gi).double().abs().sum()) for t, gi in zip(theta, g)),
        "grasp": -sum(float((t * h).double().sum()) for t, h in zip(theta, hg)),
    }
    # Fisher: units of each layer's linear node (positions = time steps), then the decoder's logits.
    pre_g = grads[len(theta) : len(theta) + len(flat_pre)]
    acts, ags, k = [], [], 0
    for lp in pre:
        acts.append(torch.stack([a.detach() for a in lp], 1))
        ags.append(torch.stack([gg.detach() for gg in pre_g[k : k + len(lp)]], 1))
        k += len(lp)
    acts.append(logits.detach().transpose(0, 1))
    ags.append(grads[-1].detach().transpose(0, 1))
    ref["fisher"] = fisher_of(acts, ags)
    # NASWOT: the sign of every activation's input, all steps and layers; rows = sequences.
    codes = torch.cat([a.detach() > 0 for lp in pre for a in lp], dim=1)
    ref["naswot"] = float(torch.linalg.slogdet(codes_kernel(codes))[1])
    ref["synflow"] = synflow_rnn_reference(model, x.shape[0], act)
    # Zen: x then ε drawn from a generator seeded with the seed; f = last layer's output.
    gen = torch.Generator().manual_seed(seed)
    shape = (x.shape[0], x.shape[1], model.emsize)
    z0, eps = torch.randn(shape, generator=gen), torch.randn(shape, generator=gen)
    with torch.no_grad():
        f0, _ = manual_rnn(layers, z0, act)
        f1, _ = manual_rnn(layers, z0 + 0.01 * eps, act)
    ref["zen"] = math.log(float((f0.double() - f1.double()).abs().sum(dim=(0, 2)).mean()))
    return ref


def synflow_rnn_reference(model, seq, act, dtype=torch.float64, k=0):
    """ln Σ |θ ⊙ ∂R/∂θ| with |θ| in ``dtype``, input ones [seq, 1, emsize], R = Σ logits.

    ``k`` > 0 computes ∂(2^-k R)/∂θ (an exact rescaling) and adds k ln 2 back.
    """
    layers, E, dec_b = lm_tensors(model, dtype, abs_=True)
    theta = [t for wx, wh, _ in layers for t in (wx, wh)] + [E]
    out, _ = manual_rnn(layers, torch.ones(seq, 1, model.emsize, dtype=dtype), act)
    logits = out @ E.T + dec_b
    grads = torch.autograd.grad((logits * 2.0**-k).sum(), theta)
    total = sum(float((t * g).detach().abs().sum()) for t, g in zip(theta, grads))
    return (math.log(total) if total > 0 else math.nan) + k * math.log(2.0)


@pytest.fixture(scope="module")
def rnn_case():
    model = tiny_lm(emb_scale=20.0)
    batch = rnn_batch()
    return model, batch, engine.score("rnn", model, batch, PROXIES, seed=SEED), rnn_reference(model, batch)


@pytest.mark.parametrize("name", PROXIES)
def test_rnn_proxy_matches_hand_computation(rnn_case, name):
    _, _, res, ref = rnn_case
    assert name not in res.reasons, res.reasons.get(name)
    tol = 1e-3 if name == "grasp" else 1e-4
    assert res.scores[name] == pytest.approx(ref[name], rel=tol, abs=1e-9), name


def test_rnn_evaluator_matches_model_on_every_example_recipe(data_dir):
    with open(data_dir / "nasbench_nlp" / "recepies_example.json") as f:
        recipes = [Recipe(r if isinstance(r, dict) else json.loads(r)) for r in json.load(f)]
    assert len(recipes) == 10
    x, _ = rnn_batch(seq=6, bsz=3)
    for i, recipe in enumerate(recipes):
        model = tiny_lm(recipe, nlayers=3)
        with torch.no_grad():
            e = model.encoder(x)
            # The proxies run the model's own cell on other tensors: with copies of its parameters,
            # the same operations in the same order, so the same bits.
            ours = run_layers_with(model, layer_parameters(model, lambda t: t.detach().clone()), e)
            assert torch.equal(ours, model.run_layers(e)[1]), f"recipe {i}"
            # SynFlow's float64 |θ| replaces every parameter: as a float64 copy of the model with |θ|.
            twin = tiny_lm(recipe, nlayers=3).double()  # the same seeded draws
            for p in twin.parameters():
                p.abs_()
            ours = run_layers_with(model, layer_parameters(model, lambda t: t.detach().double().abs()), e.double())
            assert torch.equal(ours, twin.run_layers(e.double())[1]), f"recipe {i}"


def autograd_loss_proxies(model, batch) -> dict[str, float]:
    """grad_norm, snip, grasp, fisher and naswot by the previous path: autograd through the model's own cell.

    One create_graph backward of the loss to θ (every stacked weight, E) and to
    every linear node's output at every step, then GraSP's double backward
    θᵀ H g = θ · ∂(Σ g_detached ⊙ g)/∂θ, as the RNN loss pass computed it
    before the backward went by hand.
    """
    tokens, targets = batch
    params = layer_parameters(model, lambda t: t.detach().clone().requires_grad_(True))
    emb_w = model.encoder.weight.detach().clone().requires_grad_(True)
    weights = [t for p in params for name, t in p.items() if name != "bias"] + [emb_w]
    capture = CellCapture(layers=[], input_codes=[])
    y = run_layers_with(model, params, F.embedding(tokens, emb_w), capture)
    logits = F.linear(y, emb_w, model.decoder.bias.detach())
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
    outs = [[step[n] for step in rec.steps] for layer, rec in zip(model.layers, capture.layers)
            for n in layer.recipe.order if n in layer.linear_nodes]
    flat = [a for steps in outs for a in steps]
    grads = torch.autograd.grad(loss, [*weights, *flat, logits], create_graph=True, allow_unused=True)
    g = [torch.zeros_like(w) if gi is None else gi for w, gi in zip(weights, grads)]
    hg = torch.autograd.grad(sum((gi.detach() * gi).sum() for gi in g if gi.requires_grad), weights, allow_unused=True)
    acts, k = [], len(weights)
    for steps in outs:
        a_g = [torch.zeros_like(a) if gg is None else gg for a, gg in zip(steps, grads[k : k + len(steps)])]
        acts.append((torch.stack([a.detach() for a in steps], 1), torch.stack([gg.detach() for gg in a_g], 1)))
        k += len(steps)
    acts.append((logits.detach().transpose(0, 1), grads[-1].detach().transpose(0, 1)))
    codes = torch.cat(capture.input_codes, dim=1)
    # grad_norm sums per weight matrix: each W_j block of a stacked tensor, and E.
    it = iter(g)
    by_name = [{n: next(it) for n in p if n != "bias"} for p in params]
    blocks = [per[name][rows] for layer, per in zip(model.layers, by_name) for node in layer.linear_nodes
              for name, rows in (layer.weight_slot(node, j) for j in range(len(layer.recipe.nodes[node].inputs)))]
    return {
        "grad_norm": sum(float(b.double().norm()) for b in [*blocks, g[-1]]),
        "snip": sum(float((w.double() * gi.double()).abs().sum()) for w, gi in zip(weights, g)),
        "grasp": -sum(float((w.double() * h.double()).sum()) for w, h in zip(weights, hg) if h is not None),
        "fisher": fisher_of(*zip(*acts)),
        "naswot": float(torch.linalg.slogdet(codes_kernel(codes))[1]),
    }


@pytest.mark.parametrize("arch", [5, 40, 100, 200])
def test_rnn_loss_pass_by_hand_equals_autograd_on_real_architectures(data_dir, arch):
    """The hand-written loss pass (recorded forward, decoder and BPTT by hand, GraSP by forward-over-reverse
    as gᵀ H θ) against the autograd path it replaced, on benchmark cells at the benchmark's sizes.

    The real PTB scoring batch, cut to 12 steps × 8 sequences for speed; measured
    agreement is about 1e-7 (float32 sums in another order).
    """
    from tfnas.data.ptb import load_corpus, scoring_batch
    from tfnas.spaces.nasbench_nlp.space import NasBenchNLP

    space = NasBenchNLP(data_dir / "nasbench_nlp" / "train_logs_wikitext-2.zip")
    ok = [i for i in range(len(space)) if not space[i].meta.get("failed")]
    model = space.build(space[ok[arch]], seed=0).eval()
    x, y = scoring_batch(load_corpus(data_dir), 0)
    batch = (x[:12, :8], y[:12, :8])
    names = ["grad_norm", "snip", "grasp", "fisher", "naswot"]
    got = engine.score("rnn", model, batch, names)
    assert got.reasons == {}
    ref = autograd_loss_proxies(model, batch)
    for name in names:
        assert got.scores[name] == pytest.approx(ref[name], rel=1e-5), name


def test_rnn_naswot_uses_the_pre_activation_sign():
    # A sigmoid cell: its outputs are all > 0, so the paper's activation codes are constant
    # (activation_distance's K is rank one), while NASWOT's sign of z varies.
    model = tiny_lm(one_node_recipe("activation_sigm"), emb_scale=20.0)
    batch = rnn_batch()
    res = engine.score("rnn", model, batch, ["naswot", "activation_distance"])
    assert math.isnan(res.scores["activation_distance"]) and "singular" in res.reasons["activation_distance"]
    layers, E, _ = lm_tensors(model)
    with torch.no_grad():
        _, pre = manual_rnn(layers, E[batch[0]], torch.sigmoid)
    codes = torch.cat([a > 0 for lp in pre for a in lp], dim=1)
    assert 0 < codes.double().mean() < 1
    expected = float(torch.linalg.slogdet(codes_kernel(codes))[1])
    assert res.scores["naswot"] == pytest.approx(expected, rel=1e-9)


def test_rnn_loss_proxies_need_targets():
    model = tiny_lm()
    res = engine.score("rnn", model, rnn_batch()[0], ["snip", "synflow"])
    assert math.isnan(res.scores["snip"]) and "targets" in res.reasons["snip"]
    assert math.isfinite(res.scores["synflow"])  # data-free: needs no targets


# --------------------------------------------------------------------------- overflow


def scaled_leaky_lm(scale):
    model = tiny_lm(one_node_recipe("activation_leaky_relu"))
    with torch.no_grad():
        for lay in model.layers:
            for p in lay.parameters():
                p.mul_(scale)
    return model


def test_synflow_beyond_float32_is_finite_in_log_space():
    model, seq, act = scaled_leaky_lm(60.0), 20, ACTS["activation_leaky_relu"]
    # The definition in float32 overflows; in float64 it does not.
    assert not math.isfinite(synflow_rnn_reference(model, seq, act, torch.float32))
    expected = synflow_rnn_reference(model, seq, act)
    assert expected > math.log(torch.finfo(torch.float32).max)
    res = engine.score("rnn", model, rnn_batch(seq=seq), ["synflow"])
    assert res.reasons == {}
    assert res.scores["synflow"] == pytest.approx(expected, rel=1e-9)


def test_synflow_beyond_the_float64_sum_is_finite_in_log_space():
    # The forward stays finite in float64, but Σ|θ ⊙ ∂R/∂θ| itself exceeds 1.8e308.
    model, seq, act = scaled_leaky_lm(3e14), 20, ACTS["activation_leaky_relu"]
    assert synflow_rnn_reference(model, seq, act) == math.inf
    expected = synflow_rnn_reference(model, seq, act, k=200)
    assert math.log(torch.finfo(torch.float64).max) < expected < math.inf
    res = engine.score("rnn", model, rnn_batch(seq=seq), ["synflow"])
    assert res.reasons == {}
    assert res.scores["synflow"] == pytest.approx(expected, rel=1e-9)


def test_synflow_float64_overflow_is_reported_not_mapped():
    res = engine.score("rnn", scaled_leaky_lm(1e9), rnn_batch(seq=40), ["synflow"])
    assert math.isnan(res.scores["synflow"])
    assert "float64 overflow" in res.reasons["synflow"]


# --------------------------------------------------------------------------- BERT


def lay(op, param, heads, n=1, ffn=12):
    return dict(operation_type=op, operation_parameter=param, num_operation_heads=heads, feed_forward_dimension=ffn,
                num_feed_forward=n)


BERT_LAYERS = [lay("SA", "SDP", 2, n=2), lay("DSC", 5, 2), lay("LT", "DFT", 4)]
BERT_OPTIONS = {"mask_token_id": 4, "special_token_ids": [0, 1, 2, 3, 4]}


def tiny_bert(layers=BERT_LAYERS):
    cfg = FlexiBertConfig(vocab_size=60, embedding_size=8, hidden_size=16, max_position_embeddings=16, layers=layers)
    torch.manual_seed(0)
    return FlexiBertModel(cfg).eval()


def bert_batch(rows=4):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 60, (rows, 12), generator=g)
    ids[:, 0], ids[:, -1] = 2, 3  # [CLS] ... [SEP] stand-ins
    mask = torch.ones_like(ids)
    mask[3, 8:] = 0
    ids[3, 8:] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


def manual_mask(ids, attn, seed, special, mask_id):
    r = torch.rand(ids.shape, generator=torch.Generator().manual_seed(seed))
    chosen = torch.zeros_like(ids, dtype=torch.bool)
    for i in range(ids.shape[0]):
        pos = [p for p in range(ids.shape[1]) if attn[i, p] == 1 and int(ids[i, p]) not in special]
        k = max(1, round(0.15 * len(pos)))
        for p in sorted(pos, key=lambda p: -float(r[i, p]))[:k]:
            chosen[i, p] = True
    return torch.where(chosen, torch.full_like(ids, mask_id), ids), chosen


def bert_reference(model, batch, seed=SEED):
    ref = bert_loss_reference(model, batch, seed)
    ref["naswot"] = bert_naswot_reference(model, batch)
    ref["synflow"] = bert_synflow_reference(model, batch["input_ids"].shape[1])
    ref["zen"] = bert_zen_reference(model, batch["input_ids"].shape, seed)
    return ref


def bert_loss_reference(model, batch, seed=SEED):
    """grad_norm, snip, grasp (θᵀ H g by double backward) and fisher by autograd, in the model's dtype."""
    m = copy.deepcopy(model)
    dtype = next(m.parameters()).dtype
    ids, attn, tt = batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]
    masked, chosen = manual_mask(ids, attn, seed, set(BERT_OPTIONS["special_token_ids"]), BERT_OPTIONS["mask_token_id"])
    assert chosen.sum() >= ids.shape[0]
    cfg = m.config
    dense = nn.Linear(cfg.hidden_size, cfg.embedding_size).to(dtype)
    with torch.no_grad():
        dense.weight.copy_(torch.randn(cfg.embedding_size, cfg.hidden_size,
                                       generator=torch.Generator().manual_seed(seed)) * cfg.initializer_range)
        dense.bias.zero_()
    norm = nn.LayerNorm(cfg.embedding_size, eps=cfg.layer_norm_eps).to(dtype)
    acts = []

    def keep(mod, i, o):
        o.retain_grad()
        acts.append((mod, o))

    for mod in m.modules():
        if isinstance(mod, (nn.Linear, nn.Conv1d)):
            mod.register_forward_hook(keep)
    out = m(input_ids=masked, attention_mask=attn, token_type_ids=tt).last_hidden_state
    h = norm(F.gelu(dense(out[chosen])))
    logits = h @ m.embeddings.word_embeddings.weight.T
    loss = F.cross_entropy(logits, ids[chosen])
    theta = [mod.weight for mod in m.modules() if isinstance(mod, (nn.Linear, nn.Conv1d, nn.Embedding))]
    loss.backward(create_graph=True)
    # Read the activation gradients now: the double backward below flows through them again.
    act_grads = [o.grad.detach().clone() for _, o in acts]
    g = [t.grad for t in theta]
    hg = torch.autograd.grad(sum((gi.detach() * gi).sum() for gi in g), theta)
    ref = {
        "grad_norm": sum(float(gi.double().norm()) for gi in g),
        "snip": sum(float((t * gi).double().abs().sum()) for t, gi in zip(theta, g)),
        "grasp": -sum(float((t * hh).double().sum()) for t, hh in zip(theta, hg)),
        # Linear outputs [B, S, C]; Conv1d outputs [B, C, S] -> [B, S, C].
        "fisher": fisher_of(
            [o.detach() if isinstance(mod, nn.Linear) else o.detach().transpose(1, 2) for mod, o in acts],
            [g if isinstance(mod, nn.Linear) else g.transpose(1, 2) for (mod, _), g in zip(acts, act_grads)],
        ),
    }
    return ref


def bert_naswot_reference(model, batch):
    m = copy.deepcopy(model)
    codes, valid = [], []
    attn = batch["attention_mask"].bool()
    for layer in m.encoder.layer:
        def hook(mod, i, o):
            codes.append((o > 0).reshape(o.shape[0], -1))
            valid.append(attn[:, :, None].expand_as(o).reshape(o.shape[0], -1))
        layer.feed_forward.act.register_forward_hook(hook)
    with torch.no_grad():
        m(**batch)
    k = codes_kernel(torch.cat(codes, 1), torch.cat(valid, 1))
    return float(torch.linalg.slogdet(k)[1])


def bert_synflow_reference(model, seq):
    m = copy.deepcopy(model).double()
    with torch.no_grad():
        for p in m.parameters():
            p.abs_()
    for mod in m.modules():
        if isinstance(mod, nn.LayerNorm):  # LayerNorm's affine part only
            mod.forward = lambda x, mod=mod: x * mod.weight + mod.bias
    out = m.encode(torch.ones(1, seq, m.config.hidden_size, dtype=torch.float64)).last_hidden_state
    out.sum().backward()
    return math.log(sum(float((mod.weight * mod.weight.grad).abs().sum()) for mod in m.modules()
                        if isinstance(mod, (nn.Linear, nn.Conv1d)) and mod.weight.grad is not None))


def bert_zen_reference(model, shape, seed):
    m = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    full = (shape[0], shape[1], m.config.hidden_size)
    x, eps = torch.randn(full, generator=gen), torch.randn(full, generator=gen)
    sigmas = []
    handles = [mod.register_forward_pre_hook(lambda mod, i: sigmas.append(i[0].double().var(-1, unbiased=False).mean()))
               for mod in m.encoder.modules() if isinstance(mod, nn.LayerNorm)]
    with torch.no_grad():
        f0 = m.encode(x).last_hidden_state.double()
        for h in handles:
            h.remove()
        f1 = m.encode(x + 0.01 * eps).last_hidden_state.double()
    assert len(sigmas) == 5  # SA: 2, DSC: 2, LT: 1 (feed-forward only)
    return math.log(float((f0 - f1).abs().sum(dim=(1, 2)).mean())) + sum(0.5 * math.log(float(v)) for v in sigmas)


@pytest.fixture(scope="module")
def bert_case():
    model, batch = tiny_bert(), bert_batch()
    res = engine.score("bert", model, batch, PROXIES, seed=SEED, options=BERT_OPTIONS)
    return model, batch, res, bert_reference(model, batch)


@pytest.mark.parametrize("name", PROXIES)
def test_bert_proxy_matches_hand_computation(bert_case, name):
    _, _, res, ref = bert_case
    assert name not in res.reasons, res.reasons.get(name)
    tol = 1e-3 if name == "grasp" else 1e-4
    assert res.scores[name] == pytest.approx(ref[name], rel=tol, abs=1e-9), name


def test_bert_loss_proxies_in_chunks_equal_the_whole_batch():
    """36 sequences in chunks of 16 and 20 (micro_batch_tokens = 16 × 12; the remainder of 4 joins the
    last chunk) against one chunk and against whole-batch autograd (GraSP as θᵀ H g by double backward)."""
    model, batch = tiny_bert(), bert_batch(rows=36)
    names = ["grad_norm", "snip", "grasp", "fisher"]
    chunked = engine.score("bert", model, batch, names, seed=SEED, options={**BERT_OPTIONS, "micro_batch_tokens": 192})
    whole = engine.score("bert", model, batch, names, seed=SEED, options={**BERT_OPTIONS, "micro_batch_tokens": 10**6})
    ref = bert_reference(model, batch)
    assert chunked.reasons == whole.reasons == {}
    for name in names:
        assert chunked.scores[name] == pytest.approx(whole.scores[name], rel=1e-5), name
        assert chunked.scores[name] == pytest.approx(ref[name], rel=1e-3 if name == "grasp" else 1e-4), name


def test_bert_loss_proxies_in_float64_equal_autograd_and_float32():
    """A float64 copy scores (the fresh generator head takes the model's dtype) and its loss proxies equal
    float64 autograd to 1e-9; the float32 scores are within 1e-5 of them, GraSP within 1e-3 (a sum of terms of
    both signs: 1e-4 here; 5e-7 or less on five NAS-Bench-BERT architectures with the 8 × 128 batch)."""
    model, batch = tiny_bert(), bert_batch()
    names = ["grad_norm", "snip", "grasp", "fisher"]
    wide = copy.deepcopy(model).double()
    res64 = engine.score("bert", wide, batch, names, seed=SEED, options=BERT_OPTIONS)
    res32 = engine.score("bert", model, batch, names, seed=SEED, options=BERT_OPTIONS)
    ref = bert_loss_reference(wide, batch)
    assert res64.reasons == res32.reasons == {}
    for name in names:
        assert res64.scores[name] == pytest.approx(ref[name], rel=1e-9), name
        assert res32.scores[name] == pytest.approx(res64.scores[name], rel=1e-3 if name == "grasp" else 1e-5), name


def test_bert_mask_token_outside_vocabulary_is_reported():
    res = engine.score("bert", tiny_bert(), bert_batch(), ["snip", "naswot"])  # default [MASK] = 103 > vocab 60
    assert math.isnan(res.scores["snip"]) and "mask_token_id=103" in res.reasons["snip"]
    assert math.isfinite(res.scores["naswot"])


# --------------------------------------------------------------------------- shared passes


def _paper_names(space):
    return list(OmegaConf.load(REPO_ROOT / "conf" / "metrics" / f"{space}.yaml").names)


@pytest.mark.parametrize("space", ["rnn", "bert"])
def test_passes_shared_and_paper_metrics_unchanged(space):
    if space == "rnn":
        model, batch, opts, codes_runs = tiny_lm(emb_scale=20.0, nlayers=3), rnn_batch(), {}, 0
    else:
        model, batch, opts, codes_runs = tiny_bert(), bert_batch(), BERT_OPTIONS, 1
    paper = _paper_names(space)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    alone = engine.score(space, model, batch, paper, seed=SEED, options=opts)
    rng = torch.get_rng_state(), np.random.get_state()[1].copy()
    before = Counter(engine.PASS_COUNTS)
    both = engine.score(space, model, batch, paper + PROXIES, seed=SEED, options=opts)
    runs = {p: engine.PASS_COUNTS[(space, p)] - before[(space, p)] for p in PASSES}
    # One loss pass (the create_graph one serves the first-order proxies), each other pass once.
    assert runs == {"proxy_loss": 0, "proxy_loss_hvp": 1, "proxy_codes": codes_runs, "proxy_synflow": 1, "proxy_zen": 1}
    assert torch.equal(torch.get_rng_state(), rng[0]) and np.array_equal(np.random.get_state()[1], rng[1])
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    for k, v in alone.scores.items():
        assert (math.isnan(v) and math.isnan(both.scores[k])) or both.scores[k] == v, k
    assert set(both.scores) == set(alone.scores) | set(PROXIES)
    # First-order proxies read the create_graph pass: same values as from the plain loss pass.
    plain = engine.score(space, model, batch, ["grad_norm", "snip", "fisher"], seed=SEED, options=opts)
    for k in ("grad_norm", "snip", "fisher"):
        assert both.scores[k] == pytest.approx(plain.scores[k], rel=1e-6)


def test_configs_list_paper_metrics_then_proxies():
    from hydra import compose, initialize_config_dir

    import tfnas.hydra_support  # noqa: F401  (resolvers)
    from tfnas.schema import metric_names

    proxies = list(OmegaConf.load(REPO_ROOT / "conf" / "metrics" / "proxies.yaml").names)
    assert proxies == PROXIES
    for space in ("rnn", "bert", "gpt"):
        with initialize_config_dir(config_dir=str(REPO_ROOT / "conf"), version_base="1.3"):
            combined = metric_names(compose("score", overrides=[f"metrics=all_{space}"]).metrics)
        assert combined == _paper_names(space) + proxies
        assert set(combined) <= set(available(space))


def test_metric_names_on_the_command_line_select_exactly_them():
    """metrics.names=[...] replaces the composed family + proxies list (the GPT spaces' default is all_gpt)."""
    from hydra import compose, initialize_config_dir

    import tfnas.hydra_support  # noqa: F401  (resolvers)
    from tfnas.schema import metric_names

    for overrides in (["space=lts_gpt2_lm1b"], ["metrics=all_rnn"], ["space=nasbench_bert", "metrics=all_bert"]):
        with initialize_config_dir(config_dir=str(REPO_ROOT / "conf"), version_base="1.3"):
            cfg = compose("score", overrides=[*overrides, "metrics.names=[num_params,snip]"])
        assert metric_names(cfg.metrics) == ["num_params", "snip"], overrides


# --------------------------------------------------------------------------- real data


def test_real_recipe_and_ptb_batch(data_dir):
    from tfnas.data.ptb import load_corpus, scoring_batch

    with open(data_dir / "nasbench_nlp" / "recepies_example.json") as f:
        lstm = Recipe(json.load(f)[1])
    x, y = scoring_batch(load_corpus(data_dir), 0)
    torch.manual_seed(0)
    model = AWDLanguageModel(lstm, 10_000).eval()  # benchmark sizes; a short slice of the real batch
    res = engine.score("rnn", model, (x[:8, :6], y[:8, :6]), PROXIES)
    assert res.reasons == {}
    assert all(math.isfinite(res.scores[n]) for n in PROXIES)
    assert res.scores["grasp"] != 0 and res.scores["snip"] > 0


def test_real_tokenizer_batch_uses_default_special_ids(data_dir):
    from tfnas.data.text import TextScoringData

    batch = TextScoringData(data_dir, batch_size=3, seq_len=24).scoring_batch(0)
    layers = [lay("SA", "WMA", 2), lay("DSC", 9, 2)]
    cfg = FlexiBertConfig(embedding_size=8, hidden_size=16, max_position_embeddings=32, layers=layers)
    torch.manual_seed(0)
    model = FlexiBertModel(cfg).eval()
    res = engine.score("bert", model, batch, PROXIES)
    assert res.reasons == {}
    assert all(math.isfinite(res.scores[n]) for n in PROXIES)


def test_naswot_kernel_single_product_equals_the_masked_count():
    """K_ij counts agreeing bits: the one-product form (no mask) and the masked two-product form with every
    bit valid give the same integers, and a direct count over pairs agrees."""
    g = torch.Generator().manual_seed(3)
    codes = torch.rand(6, 40, generator=g) > 0.4
    plain, masked = NaswotKernel(), NaswotKernel()
    plain.add(codes)
    masked.add(codes, torch.ones_like(codes))
    direct = (codes[:, None, :] == codes[None, :, :]).sum(dim=2).double()
    assert torch.equal(plain.kernel, direct) and torch.equal(masked.kernel, direct)
