"""The paper's RNN metrics: published values, hand computations, determinism, shared passes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tfnas.data.ptb import load_corpus, scoring_batch
from tfnas.models.awd_lm import AWDLanguageModel
from tfnas.models.rnn_cell import CellCapture
from tfnas.scoring import engine
from tfnas.scoring.api import ScoringContext
from tfnas.scoring.rnn import bptt
from tfnas.scoring.rnn.passes import noise_epsilon
from tfnas.spaces.nasbench_nlp.benchmark import read_benchmark
from tfnas.spaces.nasbench_nlp.generator import generate_recipe
from tfnas.spaces.nasbench_nlp.recipe import OPS, Recipe
from tfnas.spaces.nasbench_nlp.space import NasBenchNLP

PAPER_METRICS = [
    "hidden_covariance",
    "activation_distance",
    "synaptic_saliency",
    "hidden_synaptic_saliency",
    "jacobian_covariance",
    "jacobian_cosine",
    "jacobian_large_noise",
    "jacobian_more_noise",
    "num_params",
]

# Published per-architecture values (paper's CSV), WikiText-2 log recipe ids, PTB scoring batch.
PUBLISHED = {
    "1000475": dict(
        activation_distance=428.5303773, hidden_synaptic_saliency=767195.8125, hidden_covariance_l1=-7993734.177,
        hidden_covariance_l2=-41763587.39, hidden_covariance_l3=-38627697.17, jacobian_cosine=0.500007027,
        synaptic_saliency=3539935.5, jacobian_large_noise=40897.05412, jacobian_large_noise_cosine=0.999997746,
        jacobian_more_noise=1.87e19, jacobian_more_noise_cosine=0.062532727, jacobian_covariance=-71.10689558,
    ),
    "1009100": dict(
        activation_distance=481.7277588, hidden_synaptic_saliency=304690.3125, hidden_covariance_l1=-52431.40096,
        hidden_covariance_l2=-479391.3278, hidden_covariance_l3=-717657.8419, jacobian_cosine=0.501820379,
        synaptic_saliency=9108864.0, jacobian_large_noise=85.99436356, jacobian_large_noise_cosine=0.999713688,
        jacobian_more_noise=19801944922.0, jacobian_more_noise_cosine=0.064209565, jacobian_covariance=-71.07331122,
    ),
    "1011182": dict(
        activation_distance=562.3325978, hidden_synaptic_saliency=165653.4375, hidden_covariance_l1=-5597.493943,
        hidden_covariance_l2=-11400.36792, hidden_covariance_l3=-9433.315932, jacobian_cosine=0.507754676,
        synaptic_saliency=3405075.5, jacobian_large_noise=9.59813102, jacobian_large_noise_cosine=0.999226486,
        jacobian_more_noise=88614100.65, jacobian_more_noise_cosine=0.075918884, jacobian_covariance=-71.08292706,
    ),
}
TOLERANCE = {"jacobian_large_noise": 1e-3, "jacobian_more_noise": 5e-3, "jacobian_more_noise_cosine": 5e-3}


@pytest.fixture(scope="module")
def benchmark(data_dir):
    return {a.benchmark_id: a for a in read_benchmark(data_dir / "nasbench_nlp" / "train_logs_wikitext-2.zip")}


@pytest.fixture(scope="module")
def batch(data_dir):
    return scoring_batch(load_corpus(data_dir), batch_index=0)


def _model(recipe: Recipe, seed: int = 0, **sizes) -> AWDLanguageModel:
    torch.manual_seed(seed)
    np.random.seed(seed)
    return AWDLanguageModel(recipe, sizes.pop("ntoken", 10_000), **sizes).eval()


@pytest.mark.parametrize("recipe_id", sorted(PUBLISHED))
def test_paper_compat_reproduces_published_values(benchmark, batch, recipe_id):
    model = _model(benchmark[recipe_id].spec)
    result = engine.score("rnn", model, batch, PAPER_METRICS, seed=0, paper_compat=True)
    assert not result.reasons
    for name, published in PUBLISHED[recipe_id].items():
        got = result.scores[name]
        assert got == pytest.approx(published, rel=TOLERANCE.get(name, 1e-4)), name


def test_defaults_fix_the_two_paper_bugs(benchmark, batch):
    model = _model(benchmark["1011182"].spec)
    names = ["jacobian_covariance", "jacobian_large_noise"]
    fixed = engine.score("rnn", model, batch, names).scores
    compat = engine.score("rnn", model, batch, names, paper_compat=True).scores
    # Compat's "jacobian_covariance" is S(e): architecture-independent, close to -71.08 for every cell.
    assert compat["jacobian_covariance"] == pytest.approx(-71.08292706, rel=1e-6)
    assert fixed["jacobian_covariance"] != pytest.approx(compat["jacobian_covariance"], rel=1e-3)
    assert fixed["jacobian_large_noise"] == pytest.approx(-compat["jacobian_large_noise"], rel=1e-9)


def test_same_seed_same_scores_other_seed_other_scores(benchmark, batch):
    spec = benchmark["1009100"].spec
    names = ["hidden_covariance", "jacobian_cosine", "jacobian_large_noise"]
    a = engine.score("rnn", _model(spec, 0), batch, names, seed=0).scores
    b = engine.score("rnn", _model(spec, 0), batch, names, seed=0).scores
    c = engine.score("rnn", _model(spec, 1), batch, names, seed=1).scores
    assert a == b
    assert all(a[k] != c[k] for k in a)


def test_zero_state_cell_gets_nan_with_reason(benchmark, batch):
    model = _model(benchmark["1009374"].spec)
    result = engine.score("rnn", model, batch, ["hidden_covariance", "num_params"])
    for layer in (1, 2, 3):
        key = f"hidden_covariance_l{layer}"
        assert math.isnan(result.scores[key])
        assert "zero" in result.reasons[key]
    assert result.scores["num_params"] > 0


def test_overflowing_cell_gets_nan_with_reason(batch):
    """Generated cell 19 (seed 0) multiplies states together; they overflow float32 in every layer."""
    space = NasBenchNLP(None, generate=20)
    model = space.build(space[19], seed=0).eval()
    result = engine.score("rnn", model, batch, ["hidden_covariance"])
    for layer in (1, 2, 3):
        assert math.isnan(result.scores[f"hidden_covariance_l{layer}"])
        assert f"layer {layer} hidden state overflows float32" in result.reasons[f"hidden_covariance_l{layer}"]


# ---------------------------------------------------------------- hand computations on a tiny model

VANILLA = {"f": {"op": "linear", "input": ["x", "h_prev_0"]}, "h_new_0": {"op": "activation_tanh", "input": ["f"]}}
# h_new_0 feeds another node of its own cell call: that use must not count in hidden synaptic saliency.
SELF_FEEDING = {
    "a": {"op": "linear", "input": ["x", "h_prev_0", "h_prev_1"]},
    "h_new_0": {"op": "activation_tanh", "input": ["a"]},
    "b": {"op": "linear", "input": ["h_new_0", "x"]},
    "b_act": {"op": "activation_sigm", "input": ["b"]},
    "h_new_1": {"op": "elementwise_prod", "input": ["b_act", "h_prev_1"]},
}
TINY = dict(ntoken=23, emsize=6, nhid=7, nlayers=2)


def _tiny_batch(seq=9, bsz=5):
    g = torch.Generator().manual_seed(3)
    return torch.randint(0, 23, (seq, bsz), generator=g), None


def _manual_vanilla(model: AWDLanguageModel, tokens: torch.Tensor):
    """An independent vanilla-RNN LM: fresh leaf copies of the weights and a plain loop."""
    emb_w = model.encoder.weight.detach().clone().requires_grad_(True)
    weights = []
    for layer in model.layers:
        weights.append(
            [layer.weight("f", 0).detach().clone().requires_grad_(True),
             layer.weight("f", 1).detach().clone().requires_grad_(True),
             layer.node_bias("f").detach().clone()]
        )
    x = emb_w[tokens]
    states, leaves = [], []
    for wx, wh, b in weights:
        h = torch.zeros(tokens.shape[1], wh.shape[0])
        seq_states, outs = [], []
        for t in range(tokens.shape[0]):
            seq_states.append(h)
            h = torch.tanh(x[t] @ wx.t() + h @ wh.t() + b)
            h.retain_grad()
            outs.append(h)
        states.append(seq_states)
        leaves.append(outs)
        x = torch.stack(outs)
    x.sum().backward()
    return emb_w, weights, states, leaves


def test_saliencies_and_covariance_match_an_independent_vanilla_rnn():
    model = _model(Recipe(VANILLA), **TINY)
    tokens, _ = _tiny_batch()
    result = engine.score(
        "rnn", model, (tokens, None), ["hidden_covariance", "synaptic_saliency", "hidden_synaptic_saliency"]
    )
    emb_w, weights, states, leaves = _manual_vanilla(model, tokens)
    # Synaptic saliency: the x weight (first input) is skipped; W_hh and the embedding count.
    syn = (emb_w * emb_w.grad).abs().sum() + sum((wh * wh.grad).abs().sum() for _, wh, _ in weights)
    assert result.scores["synaptic_saliency"] == pytest.approx(float(syn), rel=1e-5)
    hsyn = sum((h * h.grad).abs().sum() for outs in leaves for h in outs[:-1])
    assert result.scores["hidden_synaptic_saliency"] == pytest.approx(float(hsyn), rel=1e-5)
    for layer, seq_states in enumerate(states, start=1):
        m = torch.stack(seq_states).reshape(-1, seq_states[0].shape[1]).detach().double().numpy().T
        lam = np.real(np.linalg.eig(np.corrcoef(m))[0])
        expected = -np.sum(np.log(lam + 1e-5) + 1 / (lam + 1e-5))
        assert result.scores[f"hidden_covariance_l{layer}"] == pytest.approx(expected, rel=1e-6)


def test_hidden_saliency_ignores_uses_inside_the_producing_cell_call():
    model = _model(Recipe(SELF_FEEDING), **TINY)
    tokens, _ = _tiny_batch()
    got = engine.score("rnn", model, (tokens, None), ["hidden_synaptic_saliency"]).scores["hidden_synaptic_saliency"]
    # Independent: run the model with h_new_0 detached from its later uses inside the same call.
    emb = model.encoder(tokens).detach()
    total, x = 0.0, emb
    outs_all = []
    for layer in model.layers:
        h0 = torch.zeros(tokens.shape[1], layer.hidden_size)
        h1 = torch.zeros_like(h0)
        outs = []
        for t in range(tokens.shape[0]):
            a = _lin(layer, "a", x[t], h0, h1)
            new0 = torch.tanh(a)
            leave = new0 * 1.0  # the copy that leaves the cell
            leave.retain_grad()
            b = torch.sigmoid(_lin(layer, "b", new0, x[t]))
            h1 = b * h1
            h0 = leave
            outs.append(leave)
        outs_all.append(outs)
        x = torch.stack(outs)
    x.sum().backward()
    total = sum(float((h * h.grad).abs().sum()) for outs in outs_all for h in outs[:-1])
    assert got == pytest.approx(total, rel=1e-5)
    # The same states' full gradient (including the in-cell use) gives a different number.
    assert got != pytest.approx(total * 1.5, rel=0.2)


def _lin(layer, node, *inputs):
    return layer.node_bias(node) + sum(i @ layer.weight(node, j).t() for j, i in enumerate(inputs))


def test_activation_distance_matches_explicit_kernel():
    model = _model(Recipe(SELF_FEEDING), **TINY)
    with torch.no_grad():  # word vectors large enough that samples get different activation codes
        model.encoder.weight.mul_(30)
    tokens, _ = _tiny_batch()
    got = engine.score("rnn", model, (tokens, None), ["activation_distance"]).scores["activation_distance"]
    codes = []
    emb = model.encoder(tokens).detach()
    with torch.no_grad():
        x = emb
        for layer in model.layers:
            h0 = torch.zeros(tokens.shape[1], layer.hidden_size)
            h1 = torch.zeros_like(h0)
            outs = []
            for t in range(tokens.shape[0]):
                new0 = torch.tanh(_lin(layer, "a", x[t], h0, h1))
                b = torch.sigmoid(_lin(layer, "b", new0, x[t]))
                codes += [new0 > 0, b > 0]
                h0, h1 = new0, b * h1
                outs.append(new0)
            x = torch.stack(outs)
    k = np.zeros((tokens.shape[1],) * 2)
    for c in codes:
        c = c.double().numpy()
        k += c @ c.T + (1 - c) @ (1 - c).T
    sign, expected = np.linalg.slogdet(k)
    assert sign != 0 and math.isfinite(got)
    assert got == pytest.approx(expected, rel=1e-9)


def test_noise_jacobians_equal_separate_unbatched_passes():
    """The amplitudes share one batched pass; each must equal its own pass with the paper's ε."""
    model = _model(Recipe(VANILLA), **TINY)
    tokens, _ = _tiny_batch()
    noise = {"noise:small", "noise:large", "noise:very_large"}
    ctx = ScoringContext("rnn", model, (tokens, None), seed=4, requested={"grad": noise})
    batched = ctx.get("grad").noise
    e = model.encoder(tokens).detach().double()
    np.random.seed(4)
    eps = torch.from_numpy(np.random.normal(size=tuple(e.shape)))
    assert torch.equal(eps, torch.from_numpy(noise_epsilon(4, tuple(e.shape))))
    v = e.var(dim=1, unbiased=False, keepdim=True)
    for key, amp in (("small", 0.1), ("large", 10.0), ("very_large", 100.0)):
        inp = (e + amp * v * eps).float().requires_grad_(True)
        _, y, _ = model.run_layers(inp)
        (j,) = torch.autograd.grad(y.sum(), [inp])
        torch.testing.assert_close(batched[key], j, rtol=1e-5, atol=1e-7)


def test_each_pass_runs_once_and_hidden_covariance_needs_no_backward():
    model = _model(Recipe(VANILLA), **TINY)
    tokens, _ = _tiny_batch()
    engine.PASS_COUNTS.clear()
    engine.score("rnn", model, (tokens, None), PAPER_METRICS + ["jacobian_small_noise"])
    assert engine.PASS_COUNTS == {("rnn", "grad"): 1}  # the noised inputs ride in the grad pass
    engine.PASS_COUNTS.clear()
    engine.score("rnn", model, (tokens, None), ["hidden_covariance", "activation_distance"])
    assert engine.PASS_COUNTS == {("rnn", "forward"): 1}


def test_unknown_metric_is_a_clear_error():
    with pytest.raises(KeyError, match="no metric 'hidden_covarianse'.*available"):
        engine.score("rnn", _model(Recipe(VANILLA), **TINY), _tiny_batch(), ["hidden_covarianse"])


# The saliency reads blocks 1 and 3 of the stacked h_prev_0 weight (second inputs), not 0 and 2:
# the rebuilt gradient must cover a stack in separate runs of blocks.
GAPPED = {
    "a": {"op": "linear", "input": ["h_prev_0", "x"]},
    "b": {"op": "linear", "input": ["x", "h_prev_0"]},
    "c": {"op": "linear", "input": ["h_prev_0", "a"]},
    "d": {"op": "linear", "input": ["b", "h_prev_0"]},
    "e": {"op": "blend", "input": ["c", "d", "a"]},
    "h_new_0": {"op": "activation_tanh", "input": ["e"]},
}


@pytest.mark.parametrize("cell", ["1011182", "gapped"])
def test_synaptic_saliency_equals_plain_autograd(benchmark, cell):
    """The engine's rebuilt weight gradients must equal ordinary autograd on the parameters.

    Recipe 1011182: h_new_0 = tanh(linear(h_prev_1, h_prev_0)) is tanh(bias) at
    t = 0, whatever x is; its later products still carry weight gradients.
    """
    spec = benchmark["1011182"].spec if cell == "1011182" else Recipe(GAPPED)
    model = _model(spec, ntoken=40, emsize=9, nhid=11)
    tokens = torch.randint(0, 40, (8, 5), generator=torch.Generator().manual_seed(0))
    got = engine.score("rnn", model, (tokens, None), ["synaptic_saliency"]).scores["synaptic_saliency"]
    _, y, _ = model.run_layers(model.encoder(tokens))
    y.sum().backward()
    expected = (model.encoder.weight * model.encoder.weight.grad).abs().sum().item()
    for layer in model.layers:
        for name in layer.linear_nodes:
            for j in range(1, len(layer.recipe.nodes[name].inputs)):
                src, b = layer.blocks[(name, j)]
                h = layer.hidden_size
                w = layer.weights[f"from_{src}"]
                expected += (w * w.grad)[b * h : (b + 1) * h].abs().sum().item()
    assert got == pytest.approx(expected, rel=1e-5)


BPTT_SEEDS = range(12)
# Three-input product and sum (generated cells of this size seldom have them).
WIDE = {
    "a": {"op": "linear", "input": ["x", "h_prev_0"]},
    "b": {"op": "activation_sigm", "input": ["a"]},
    "c": {"op": "activation_tanh", "input": ["a"]},
    "d": {"op": "elementwise_prod", "input": ["b", "c", "h_prev_0"]},
    "e": {"op": "elementwise_sum", "input": ["d", "b", "c"]},
    "h_new_0": {"op": "blend", "input": ["b", "e", "h_prev_0"]},
}


@pytest.mark.parametrize("cell", [*BPTT_SEEDS, "wide"])
def test_backward_through_time_equals_autograd(cell):
    """The hand-written backward (input and every weight-product gradient) against autograd on random cells."""
    recipe = Recipe(WIDE) if cell == "wide" else generate_recipe(1 + cell % 3, cell)
    model = _model(recipe, **TINY)
    tokens, _ = _tiny_batch()
    e = model.encoder(tokens).detach().requires_grad_(True)
    _, y, _ = model.run_layers(e)
    y.sum().backward()
    capture = CellCapture(layers=[])
    with torch.no_grad():
        model.run_layers(e.detach(), capture=capture)
    d = torch.ones_like(y)
    for layer, record in reversed(list(zip(model.layers, capture.layers))):
        grads = bptt.layer_backward(layer, record, d, product_sources=tuple(layer.sources))
        for src in layer.sources:
            inp = record.inputs if src == "x" else torch.stack([step[src] for step in record.steps])
            w = layer.weights[f"from_{src}"]
            expected = torch.zeros_like(w) if w.grad is None else w.grad  # None: y does not depend on w
            got = grads.products[src].reshape(-1, expected.shape[0]).t() @ inp.reshape(-1, inp.shape[-1])
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)
        d = grads.inputs
    torch.testing.assert_close(d, e.grad, rtol=1e-4, atol=1e-6)


def test_bptt_cells_cover_every_op():
    ops = {n.op for seed in BPTT_SEEDS for n in generate_recipe(1 + seed % 3, seed).nodes.values()}
    assert ops == set(OPS)


def test_bptt_refuses_a_layer_with_active_dropconnect():
    model = _model(Recipe(VANILLA), **TINY, wdrop=0.5).train()
    capture = CellCapture(layers=[])
    tokens, _ = _tiny_batch()
    with torch.no_grad():
        _, y, _ = model.run_layers(model.encoder(tokens), capture=capture)
    with pytest.raises(ValueError, match="eval mode"):
        bptt.layer_backward(model.layers[-1], capture.layers[-1], torch.ones_like(y))
