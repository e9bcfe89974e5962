"""GPT-family metrics and proxies against hand computations on a tiny decoder (float64)."""

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tfnas.models.lts_gpt2 import LtsGpt2Config, LtsGpt2LMHeadModel
from tfnas.scoring import engine
from tfnas.scoring.api import PASS_COUNTS
from tfnas.scoring.gpt.metrics import MAX_LAYERS
from tfnas.scoring.proxies import PROXIES, ZEN_GAMMA
from tfnas.scoring.registry import available

B, S, D = 4, 9, 8


def eig_covariance(m, k=1e-5):
    """METRICS.md's covariance score with a general eigen-solver."""
    lam = np.linalg.eig(np.corrcoef(m))[0].real
    return float(-np.sum(np.log(lam + k) + 1.0 / (lam + k)))


def eig_cosine(m):
    m = np.asarray(m, dtype=np.float64)
    u = m / np.linalg.norm(m, axis=1, keepdims=True)
    a = np.abs(u @ u.T)
    np.fill_diagonal(a, 0)
    n = m.shape[0]
    return float(1 - (a ** (1 / 20)).sum() / (2 * (n * n - n)))


@pytest.fixture(scope="module")
def model():
    cfg = LtsGpt2Config(n_token=40, tgt_len=12, d_model=D, d_embed=16, n_layer=2, n_head=[2, 4], d_inner=[12, 20],
                        div_val=2, cutoffs=[10, 25], tie_projs=[False, True, True], dropout=0.0)  # fmt: skip
    torch.manual_seed(0)
    m = LtsGpt2LMHeadModel(cfg).double()
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():  # every parameter random (biases and LayerNorms too), so each one matters
        for name, p in m.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * (0.4 if p.dim() > 1 else 0.2)
                    + (1.0 if "ln" in name and name.endswith("weight") else 0.0))  # fmt: skip
    return m.eval()


@pytest.fixture(scope="module")
def batch():
    ids = torch.randint(0, 40, (B, S), generator=torch.Generator().manual_seed(2))
    return {"input_ids": ids, "labels": ids.clone()}


@pytest.fixture(scope="module")
def scored(model, batch):
    PASS_COUNTS.clear()
    res = engine.score("gpt", model, batch, available("gpt"), seed=3)
    return res, dict(PASS_COUNTS)


@pytest.fixture(scope="module")
def reference(model, batch):
    """The decoder written out: separate q, k, v from qkv, torch's causal attention, GELU (tanh)."""
    body = model.transformer
    ids = batch["input_ids"]
    params = dict(model.named_parameters())
    x = body.embed(ids)  # non-leaf: ∂ w.r.t. it and, through it, the position table
    h, outs, qkv_outs, probs, acts = x, [], [], [], []
    for blk in body.h:
        nh, dh = blk.attn.n_head, blk.attn.d_head
        y = blk.ln_1(h)
        w = blk.attn.qkv.weight
        bias = blk.attn.qkv.bias
        q, k, v = (F.linear(y, w[i * nh * dh:(i + 1) * nh * dh], bias[i * nh * dh:(i + 1) * nh * dh]) for i in range(3))
        qkv_outs += [q, k, v]
        split = [t.view(B, S, nh, dh).transpose(1, 2) for t in (q, k, v)]
        scores = split[0] @ split[1].transpose(-1, -2) / math.sqrt(dh)
        mask = torch.ones(S, S, dtype=torch.bool).tril()
        p = scores.masked_fill(~mask, float("-inf")).softmax(-1)
        probs.append(p)
        ctx = (p @ split[2]).transpose(1, 2).reshape(B, S, nh * dh)
        h = h + blk.attn.proj(ctx)
        a = F.gelu(blk.mlp.fc(blk.ln_2(h)), approximate="tanh")
        acts.append(a)
        h = h + blk.mlp.proj(a)
        outs.append(h)
    o = outs[-1]
    names = [n for n in params if ".h." in n and n.endswith("weight") and "ln" not in n] + ["transformer.wpe.weight"]
    grads = torch.autograd.grad(o.sum(), [params[n] for n in names] + [x])
    g = dict(zip(names + ["x"], grads))
    return {"outs": outs, "qkv": qkv_outs, "probs": probs, "acts": acts, "g": g, "params": params}


def qkv_blocks(ref, i):
    """(W, ∂W) of the query, key, value row blocks of block i's fused qkv."""
    w = ref["params"][f"transformer.h.{i}.attn.qkv.weight"]
    g = ref["g"][f"transformer.h.{i}.attn.qkv.weight"]
    n = w.shape[0] // 3
    return [(w[j * n:(j + 1) * n], g[j * n:(j + 1) * n]) for j in range(3)]


def test_one_grad_pass_serves_every_transformer_metric(scored):
    res, counts = scored
    assert counts[("gpt", "grad")] == 1 and counts[("gpt", "proxy_loss_hvp")] == 1
    assert ("gpt", "proxy_loss") not in counts  # served by the hvp pass
    assert all(math.isfinite(res.scores[p]) for p in PROXIES), res.reasons
    assert {f"hidden_covariance_l{i}" for i in range(1, MAX_LAYERS + 1)} <= set(res.scores)


def test_weight_metrics_against_hand_grads(scored, reference):
    s = scored[0].scores
    div = sal = imp = 0.0
    for i in range(2):
        parts = qkv_blocks(reference, i)
        proj = (reference["params"][f"transformer.h.{i}.attn.proj.weight"], reference["g"][f"transformer.h.{i}.attn.proj.weight"])
        for w, g in parts + [proj]:
            div += float(torch.linalg.svdvals(w).sum() * torch.linalg.svdvals(g).sum())
        imp += sum(float((w * g).abs().sum()) for w, g in parts)
        for n in ("fc", "proj"):
            key = f"transformer.h.{i}.mlp.{n}.weight"
            sal += float((reference["params"][key] * reference["g"][key]).abs().sum())
    assert s["synaptic_diversity"] == pytest.approx(div, rel=1e-9)
    assert s["synaptic_diversity_normalized"] == pytest.approx(div / 8, rel=1e-9)
    assert s["synaptic_saliency"] == pytest.approx(sal, rel=1e-9)
    assert s["synaptic_saliency_normalized"] == pytest.approx(sal / 4, rel=1e-9)
    assert s["head_importance"] == pytest.approx(imp, rel=1e-9)
    assert s["head_importance_normalized"] == pytest.approx(imp / 6, rel=1e-9)


def test_activation_and_attention_metrics_against_the_hand_forward(scored, reference):
    s = scored[0].scores
    conf = [float(o.amax(dim=1).mean()) for o in reference["qkv"]]
    assert s["head_confidence"] == pytest.approx(sum(conf), rel=1e-12)
    assert s["head_confidence_normalized"] == pytest.approx(sum(conf) / 6, rel=1e-12)
    soft = []
    allowed = torch.ones(S, S, dtype=torch.bool).tril()
    for p in reference["probs"]:
        m = p.amax(dim=1)  # max over heads [B, S, S]
        soft.append(float(m[:, allowed].mean()))
    assert s["head_softmax_confidence"] == pytest.approx(sum(soft), rel=1e-12)
    dist = 0.0
    for a in reference["acts"]:
        c = (a[0] > 0).double()  # first sequence [S, F]
        dist += float((c @ c.T + (1 - c) @ (1 - c).T).sum())
    assert s["activation_distance"] == pytest.approx(dist, rel=1e-12)
    assert s["activation_distance_normalized"] == pytest.approx(dist / 2, rel=1e-12)


def test_jacobian_and_hidden_covariance_against_numpy(scored, reference):
    s, reasons = scored[0].scores, scored[0].reasons
    pos = reference["g"]["transformer.wpe.weight"][:S].numpy()  # [S, D]: only the positions used
    assert s["jacobian_covariance"] == pytest.approx(eig_covariance(pos.T), rel=1e-8)
    assert s["jacobian_cosine"] == pytest.approx(eig_cosine(pos.T), rel=1e-10)
    j = reference["g"]["x"].reshape(B, -1).numpy()
    assert s["input_jacobian_covariance"] == pytest.approx(eig_covariance(j), rel=1e-8)
    assert s["input_jacobian_cosine"] == pytest.approx(eig_cosine(j), rel=1e-10)
    hc = [eig_covariance(h.detach().reshape(-1, D).numpy().T) for h in reference["outs"]]
    assert s["hidden_covariance_l1"] == pytest.approx(hc[0], rel=1e-8)
    assert s["hidden_covariance_l2"] == pytest.approx(hc[1], rel=1e-8)
    assert s["hidden_covariance_last"] == pytest.approx(hc[1], rel=1e-8)
    assert s["hidden_covariance_mean"] == pytest.approx(sum(hc) / 2, rel=1e-8)
    assert math.isnan(s["hidden_covariance_l3"]) and reasons["hidden_covariance_l16"] == "the model has 2 layers"


def test_num_params_by_part(scored, model):
    s = scored[0].scores
    blocks = sum(p.numel() for p in model.transformer.h.parameters())
    assert s["num_params"] == sum(p.numel() for p in model.parameters())
    assert s["num_params_nonembedding"] == blocks + 2 * D
    assert s["num_params_attention"] == sum(p.numel() for b in model.transformer.h for p in b.attn.parameters())
    assert s["num_params_ffn"] == sum(p.numel() for b in model.transformer.h for p in b.mlp.parameters())


def hand_loss_grads(model, ids, create_graph=False):
    theta = [p for p in model.parameters() if p.dim() >= 2]
    loss = model(ids, labels=ids).loss
    return theta, loss, torch.autograd.grad(loss, theta, create_graph=create_graph, allow_unused=True)


def test_loss_proxies_against_hand_computation(scored, model, batch):
    s = scored[0].scores
    ids = batch["input_ids"]
    theta, loss, grads = hand_loss_grads(model, ids, create_graph=True)
    grads = [torch.zeros_like(t) if g is None else g for t, g in zip(theta, grads)]
    assert s["grad_norm"] == pytest.approx(sum(float(g.norm()) for g in grads), rel=1e-9)
    assert s["snip"] == pytest.approx(sum(float((t * g).abs().sum()) for t, g in zip(theta, grads)), rel=1e-9)
    z = sum((g.detach() * g).sum() for g in grads if g.requires_grad)
    hg = torch.autograd.grad(z, theta, allow_unused=True)
    grasp = -sum(float((t * h).sum()) for t, h in zip(theta, hg) if h is not None)
    assert s["grasp"] == pytest.approx(grasp, rel=1e-7)
    # fisher: every block linear's output a [B, S, units]: ½ mean_n (Σ_pos a ∂L/∂a)²
    acts = []
    hooks = [m.register_forward_hook(lambda m, i, o: acts.append(o)) for m in model.transformer.h.modules()
             if isinstance(m, nn.Linear)]  # fmt: skip
    loss = model(ids, labels=ids).loss
    for h in hooks:
        h.remove()
    ga = torch.autograd.grad(loss, acts)
    fisher = sum(float(0.5 * ((a * g).sum(dim=1) ** 2).mean(dim=0).sum()) for a, g in zip(acts, ga))
    assert s["fisher"] == pytest.approx(fisher, rel=1e-9)


def test_naswot_synflow_zen_against_hand_computation(scored, model, batch, reference):
    s = scored[0].scores
    # NASWOT: each sequence's code = 1[fc output > 0] of every block at every position
    codes = torch.cat([(a > 0).reshape(B, -1).double() for a in reference["acts"]], dim=1)
    k = codes @ codes.T + (1 - codes) @ (1 - codes).T
    assert s["naswot"] == pytest.approx(float(np.linalg.slogdet(k.numpy())[1]), rel=1e-10)
    # SynFlow: |θ|, LayerNorm -> |γ| x + |β|, x = ones [1, S, D], R = Σ output after ln_f
    twin = copy.deepcopy(model)
    with torch.no_grad():
        for p in twin.parameters():
            p.abs_()
    x = torch.ones(1, S, D, dtype=torch.float64)
    for blk in twin.transformer.h:
        for ln in (blk.ln_1, blk.ln_2):
            ln.forward = (lambda ln: lambda t: t * ln.weight + ln.bias)(ln)
    twin.transformer.ln_f.forward = lambda t: t * twin.transformer.ln_f.weight + twin.transformer.ln_f.bias
    out = twin.transformer.decode(x)["last_hidden_state"]
    theta = [p for p in twin.parameters() if p.dim() >= 2]
    gs = torch.autograd.grad(out.sum(), theta, allow_unused=True)
    total = sum(float((t * g).abs().sum()) for t, g in zip(theta, gs) if g is not None)
    assert s["synflow"] == pytest.approx(math.log(total), rel=1e-10)
    # Zen: x, ε ~ N(0, 1) from a generator seeded with the scoring seed (3)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(B, S, D, generator=g).double()
    eps = torch.randn(B, S, D, generator=g).double()
    variances = []
    hooks = [m.register_forward_pre_hook(lambda m, i: variances.append(i[0].var(dim=-1, unbiased=False).mean()))
             for m in model.transformer.modules() if isinstance(m, nn.LayerNorm)]  # fmt: skip
    with torch.no_grad():
        f0 = model.transformer.decode(x)["last_hidden_state"]
    for h in hooks:
        h.remove()
    with torch.no_grad():
        f1 = model.transformer.decode(x + ZEN_GAMMA * eps)["last_hidden_state"]
    delta = float((f0 - f1).abs().sum(dim=(1, 2)).mean())
    assert len(variances) == 5
    assert s["zen"] == pytest.approx(math.log(delta) + sum(0.5 * math.log(float(v)) for v in variances), rel=1e-9)


def test_scoring_leaves_the_model_as_it_was(model, batch):
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    engine.score("gpt", model, batch, ["synaptic_saliency", "grasp", "synflow"])
    assert all(torch.equal(before[n], p) and p.grad is None for n, p in model.named_parameters())


def test_wrong_model_is_an_error_not_a_crash(batch):
    res = engine.score("gpt", nn.Linear(3, 3), batch, ["head_importance", "num_params"])
    assert "LtsGpt2LMHeadModel" in res.reasons["head_importance"] and math.isnan(res.scores["num_params"])
