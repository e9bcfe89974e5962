"""The NAS-Bench-NLP cell and language model against the benchmark's facts."""

from __future__ import annotations

import json

import pytest
import torch

from tfnas.models.awd_lm import AWDLanguageModel, count_parameters
from tfnas.models.rnn_cell import RecurrentLayer
from tfnas.spaces.nasbench_nlp.benchmark import read_benchmark
from tfnas.spaces.nasbench_nlp.recipe import Recipe

WT2_VOCAB, PTB_VOCAB = 33_278, 10_000


@pytest.fixture(scope="module")
def examples(data_dir):
    with open(data_dir / "nasbench_nlp" / "recepies_example.json") as f:
        return [Recipe(r if isinstance(r, dict) else json.loads(r)) for r in json.load(f)]


@pytest.fixture(scope="module")
def logs(data_dir):
    return read_benchmark(data_dir / "nasbench_nlp" / "train_logs_wikitext-2.zip")


def _meta_count(recipe: Recipe, ntoken: int) -> int:
    with torch.device("meta"):
        return count_parameters(AWDLanguageModel(recipe, ntoken, benchmark_init=False))


def test_parameter_counts_match_every_log(logs):
    assert len(logs) == 345
    for arch in logs:
        wt2 = _meta_count(arch.spec, WT2_VOCAB)
        assert wt2 == arch.meta["num_params"], arch.benchmark_id
        assert _meta_count(arch.spec, PTB_VOCAB) == arch.meta["num_params"] - (WT2_VOCAB - PTB_VOCAB) * 401


def test_example_recipes_build(examples):
    assert len(examples) == 10
    for recipe in examples:
        assert _meta_count(recipe, PTB_VOCAB) > PTB_VOCAB * 400


def _layer(recipe: Recipe, inp=7, hid=5, seed=0) -> RecurrentLayer:
    torch.manual_seed(seed)
    layer = RecurrentLayer(recipe, inp, hid)
    layer.benchmark_init()
    return layer.eval()


def _sequence(seq=6, bsz=3, inp=7, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(seq, bsz, inp, generator=g)


def test_vanilla_rnn_equals_torch_rnncell(examples):
    layer = _layer(examples[0])
    cell = torch.nn.RNNCell(7, 5, nonlinearity="tanh")
    with torch.no_grad():
        cell.weight_ih.copy_(layer.weight("f", 0))
        cell.weight_hh.copy_(layer.weight("f", 1))
        cell.bias_ih.copy_(layer.node_bias("f"))
        cell.bias_hh.zero_()
    xs = _sequence()
    out, (h_last,) = layer(xs)
    h = torch.zeros(3, 5)
    for t in range(xs.shape[0]):
        h = cell(xs[t], h)
        torch.testing.assert_close(out[t], h)
    torch.testing.assert_close(h_last, h)


def _lin(layer: RecurrentLayer, node: str, *inputs: torch.Tensor) -> torch.Tensor:
    return layer.node_bias(node) + sum(i @ layer.weight(node, j).t() for j, i in enumerate(inputs))


def test_lstm_recipe_equals_handwritten_step(examples):
    """The benchmark's LSTM: tanh on the output gate (its quirk) and on the input candidate."""
    layer = _layer(examples[1])
    assert layer.num_hidden == 2
    xs = _sequence()
    out, (h_last, c_last) = layer(xs)
    h, c = torch.zeros(3, 5), torch.zeros(3, 5)
    for t in range(xs.shape[0]):
        x = xs[t]
        i = torch.tanh(_lin(layer, "i", x, h))
        j = torch.sigmoid(_lin(layer, "j", x, h))
        f = torch.sigmoid(_lin(layer, "f", x, h))
        o = torch.tanh(_lin(layer, "o", x, h))
        c = f * c + i * j
        h = torch.tanh(c) * o
        torch.testing.assert_close(out[t], h)
    torch.testing.assert_close(c_last, c)


def test_gru_recipe_equals_handwritten_step(examples):
    """The benchmark's GRU applies the reset gate to h before the candidate's linear map (Cho et al.)."""
    layer = _layer(examples[2])
    xs = _sequence()
    out, _ = layer(xs)
    h = torch.zeros(3, 5)
    for t in range(xs.shape[0]):
        x = xs[t]
        r = torch.sigmoid(_lin(layer, "r", x, h))
        z = torch.sigmoid(_lin(layer, "z", x, h))
        cand = torch.tanh(_lin(layer, "h_tilde", x, r * h))
        h = z * h + (1 - z) * cand
        torch.testing.assert_close(out[t], h)


def test_benchmark_init_order_and_bounds(examples):
    """Seeded builds are identical; the draws follow the benchmark's order and bounds."""
    recipe = examples[1]
    torch.manual_seed(0)
    a = AWDLanguageModel(recipe, 50, emsize=8, nhid=12)
    torch.manual_seed(0)
    b = AWDLanguageModel(recipe, 50, emsize=8, nhid=12)
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(p, q), n
    assert a.decoder.weight is a.encoder.weight
    assert torch.all(a.decoder.bias == 0)
    assert a.encoder.weight.abs().max() <= 0.1
    for layer in a.layers:
        bound = layer.hidden_size**-0.5
        assert layer.bias.abs().max() <= bound and all(w.abs().max() <= bound for w in layer.weights.values())
    # Replay the draws by hand for the first linear node of layer 1 (its bias comes first).
    torch.manual_seed(0)
    torch.empty(50, 8).normal_()  # 1. embedding default init
    for name in [n for n in recipe.nodes if recipe.nodes[n].op == "linear"]:
        for src in recipe.nodes[name].inputs:
            torch.empty(12, 8 if src == "x" else 12).uniform_()  # 2. Kaiming draws (values unused)
        torch.empty(12).uniform_()
    stdv = 12**-0.5
    first = next(n for n in recipe.nodes if recipe.nodes[n].op == "linear")
    bias = torch.empty(12).uniform_(-stdv, stdv)
    w0 = torch.empty(12, 8).uniform_(-stdv, stdv)
    torch.testing.assert_close(a.layers[0].node_bias(first), bias)
    torch.testing.assert_close(a.layers[0].weight(first, 0), w0)


def test_dropouts_only_in_training(examples):
    torch.manual_seed(0)
    lm = AWDLanguageModel(examples[1], 30, emsize=6, nhid=8, dropout=0.5, dropouth=0.5, dropouti=0.5, dropoute=0.5, wdrop=0.5)
    tokens = torch.randint(0, 30, (5, 4))
    lm.eval()
    a, b = lm(tokens).logits, lm(tokens).logits
    assert torch.equal(a, b)
    lm.train()
    c = lm(tokens).logits
    assert not torch.allclose(a, c)
    # DropConnect re-samples a mask per forward without replacing the Parameters.
    before = [id(p) for p in lm.parameters()]
    lm(tokens)
    assert before == [id(p) for p in lm.parameters()]
