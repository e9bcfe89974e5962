"""The RNN family's passes for the paper's metrics, over a NAS-Bench-NLP language model.

docs/METRICS.md "RNN space": the input is the PTB scoring minibatch ``x`` [70, 50];
``e`` = embedding output [70, 50, 400]; ``y`` = the last layer's outputs
(no decoder). Two passes cover every paper metric:

- ``forward``: no-grad forward recording the hidden states fed into every
  cell call, and (capture ``"activation_codes"``) the activation codes.
  Served by ``grad`` when that runs anyway.
- ``grad``: the same forward, then the backward of Σ y through time (by hand,
  :mod:`tfnas.scoring.rnn.bptt`); it adds ∂e (the Jacobian J) and ∂ of every
  state as it leaves its cell; on request, (W, ∂W) of the weights synaptic
  saliency reads (capture ``"weight_grads"``) and the Jacobians J_a of noised
  inputs e + a·v·ε (captures ``"noise:small"``, ``"noise:large"``,
  ``"noise:very_large"``), whose inputs ride in the same batch.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from tfnas.models.awd_lm import AWDLanguageModel
from tfnas.models.rnn_cell import CellCapture, LayerRecord, RecurrentLayer
from tfnas.scoring.api import ScoringContext, register_pass
from tfnas.scoring.rnn import bptt

#: Noise amplitudes of the paper's Jacobian-with-noise metrics (docs/METRICS.md);
#: a metric reads J_a by asking the ``grad`` pass for ``"noise:<key>"``.
AMPLITUDES = {"small": 0.1, "large": 10.0, "very_large": 100.0}


@dataclass
class RNNForward:
    """Outputs of the ``forward`` pass (and of ``grad``, which extends it).

    Attributes:
        e: [seq, batch, emsize] embedding output.
        states: per layer l, the states h^l_t fed into the cell as ``h_prev_0``
            at t = 0..seq-1 (t = 0 is the zero state), [seq, batch, hidden_l].
        codes: the activation codes ``a > 0`` of every activation-node call,
            each [batch, hidden_l] bool; None unless asked for (``"activation_codes"``).
    """

    e: Tensor
    states: list[Tensor]
    codes: list[Tensor] | None


@dataclass
class RNNGrad(RNNForward):
    """Outputs of the ``grad`` pass: the forward plus gradients of Σ y.

    Attributes:
        jacobian: ∂(Σ y)/∂e, [seq, batch, emsize].
        state_grads: per layer, the gradient of each state h^l_t (t = 1..seq-1)
            as it leaves its cell, [seq - 1, batch, hidden_l].
        weight_grads: (name, W, ∂(Σ y)/∂W) of the weights synaptic saliency
            reads, in its summation order: the embedding E [ntoken, emsize],
            then per layer, linear node and input j ≥ 1 its W_j [hidden, size]
            (see :func:`saliency_blocks`); None unless asked for (``"weight_grads"``).
        noise: amplitude key -> J_a [seq, batch, emsize] for the keys asked
            for (``"noise:<key>"``); None when none was.
    """

    jacobian: Tensor | None = None
    state_grads: list[Tensor] | None = None
    weight_grads: list[tuple[str, Tensor, Tensor]] | None = None
    noise: dict[str, Tensor] | None = None


def language_model(ctx: ScoringContext) -> AWDLanguageModel:
    """The context's model.

    Raises:
        TypeError: it is not an :class:`~tfnas.models.awd_lm.AWDLanguageModel`.
    """
    model = ctx.model
    if not isinstance(model, AWDLanguageModel):
        raise TypeError(f"RNN passes need an AWDLanguageModel, got {type(model).__name__}")
    return model


def token_batch(ctx: ScoringContext) -> tuple[Tensor, Tensor | None]:
    """The scoring batch on the model's device: (inputs [seq, batch], next-token targets or None)."""
    device = language_model(ctx).encoder.weight.device
    if isinstance(ctx.batch, (tuple, list)):
        x = ctx.batch[0].to(device)
        y = ctx.batch[1].to(device) if len(ctx.batch) > 1 and ctx.batch[1] is not None else None
        return x, y
    return ctx.batch.to(device), None


def noised_inputs(e: Tensor, seed: int, keys: list[str]) -> list[Tensor]:
    """float32(e + a·v·ε) for each amplitude key, computed in float64 (docs/METRICS.md "noise variants").

    Args:
        e: [seq, batch, emsize] embedding output.
        seed: the scoring seed; ε is :func:`noise_epsilon` of it.
        keys: keys of :data:`AMPLITUDES`.

    Returns:
        One [seq, batch, emsize] float32 tensor per key; v is the population
        variance of e over the batch axis [seq, 1, emsize].
    """
    e64 = e.double()
    eps = _epsilon(seed, tuple(e.shape)).to(e.device)
    v = e64.var(dim=1, unbiased=False, keepdim=True)
    return [(e64 + AMPLITUDES[k] * v * eps).float() for k in keys]


def _record(ctx: ScoringContext, e: Tensor, rows: int, states_only: bool = False) -> tuple[Tensor, CellCapture]:
    """The layers on ``e`` under no_grad, recording each layer's steps (and the codes if asked)."""
    codes = [] if ctx.wants("activation_codes") else None
    capture = CellCapture(activation_codes=codes, code_rows=rows, layers=[], states_only=states_only)
    with torch.no_grad():
        _, y, _ = language_model(ctx).run_layers(e, capture=capture)
    return y, capture


def _states(record: LayerRecord, rows: int) -> Tensor:
    """h_prev_0 fed into each step (the zero state first), first ``rows`` samples: [seq, rows, hidden]."""
    return torch.stack([step["h_prev_0"][:rows] for step in record.steps])


@register_pass("rnn", "forward", served_by=("grad",), captures=("activation_codes",))
def forward_pass(ctx: ScoringContext) -> RNNForward:
    """No-grad forward that records states and (if asked) activation codes."""
    with torch.no_grad():
        e = language_model(ctx).encoder(token_batch(ctx)[0])
    _, capture = _record(ctx, e, e.shape[1], states_only=True)
    return RNNForward(e, [_states(r, e.shape[1]) for r in capture.layers], capture.activation_codes)


@register_pass(
    "rnn", "grad", captures=("activation_codes", "weight_grads", *(f"noise:{k}" for k in AMPLITUDES))
)
def grad_pass(ctx: ScoringContext) -> RNNGrad:
    """Forward, then one backward of Σ y (docs/METRICS.md "one pass").

    When noised Jacobians are asked for, their noised inputs ride along in the
    same batch (samples never interact in an RNN), so one forward and one
    backward serve every metric. The forward is recorded without autograd and
    the backward runs through time by hand (:mod:`tfnas.scoring.rnn.bptt`), giving
    ∂e, the gradient of every state as it leaves its cell and that of every
    stacked weight product; the weight gradients of the clean samples that
    synaptic saliency reads are built from the latter, per source, as one
    large product Σ_t ∂P_tᵀ · in_t restricted to the blocks it reads.
    """
    model = language_model(ctx)
    tokens = token_batch(ctx)[0]
    n = tokens.shape[1]
    keys = [k for k in AMPLITUDES if ctx.wants(f"noise:{k}")]
    want_weights = ctx.wants("weight_grads")
    with torch.no_grad():
        e = model.encoder(tokens)
        e_all = torch.cat([e, *noised_inputs(e, ctx.seed, keys)], dim=1) if keys else e
    y, capture = _record(ctx, e_all, n)
    wanted = [saliency_blocks(layer) for layer in model.layers] if want_weights else [{} for _ in model.layers]
    d_out = y.new_ones(1, 1, 1).expand(y.shape)  # ∂(Σ y)/∂y
    layer_grads = [None] * len(model.layers)
    for i in reversed(range(len(model.layers))):
        layer_grads[i] = bptt.layer_backward(model.layers[i], capture.layers[i], d_out, n, tuple(wanted[i]))
        d_out = layer_grads[i].inputs
    g_e = d_out
    weight_grads = None
    if want_weights:
        emb = model.encoder.weight
        emb_grad = torch.zeros_like(emb).index_add_(0, tokens.reshape(-1), g_e[:, :n].reshape(-1, emb.shape[1]))
        weight_grads = [("encoder.weight", emb.detach(), emb_grad)]
        for i, (layer, record, grads, blocks_of) in enumerate(zip(model.layers, capture.layers, layer_grads, wanted)):
            h = layer.hidden_size
            per_block = {}
            for src, blocks in blocks_of.items():
                if src == "x":
                    inp = record.inputs[:, :n]
                else:
                    inp = torch.stack([step[src][:n] for step in record.steps])
                in_mat = inp.reshape(-1, inp.shape[-1])
                for first, count in _runs(blocks):  # column slices, not a gather
                    g_mat = grads.products[src][..., first * h : (first + count) * h].reshape(-1, count * h)
                    full = g_mat.t() @ in_mat  # [count·hidden, size]
                    per_block.update({(src, first + b): full[b * h : (b + 1) * h] for b in range(count)})
            for name in layer.linear_nodes:
                for j in range(1, len(layer.recipe.nodes[name].inputs)):
                    weight = layer.weight(name, j).detach()
                    weight_grads.append((f"layers.{i}.{name}.W{j}", weight, per_block[layer.blocks[(name, j)]]))
    return RNNGrad(
        e,
        [_states(r, n) for r in capture.layers],
        capture.activation_codes,
        jacobian=g_e[:, :n],
        state_grads=[g.leaving for g in layer_grads],
        weight_grads=weight_grads,
        noise={k: g_e[:, n * (j + 1) : n * (j + 2)] for j, k in enumerate(keys)} if keys else None,
    )


def _runs(blocks: list[int]) -> list[tuple[int, int]]:
    """Sorted block indices as (first, count) runs of consecutive blocks: [0, 1, 3] -> [(0, 2), (3, 1)]."""
    runs: list[tuple[int, int]] = []
    for b in blocks:
        if runs and runs[-1][0] + runs[-1][1] == b:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((b, 1))
    return runs


def saliency_blocks(layer: RecurrentLayer) -> dict[str, list[int]]:
    """``source -> blocks`` of the stacked weights that synaptic saliency reads.

    docs/METRICS.md: the weights of inputs 2…n of every linear node (the first
    input's weight is skipped, as the paper did); block b of source s is
    rows b·hidden … (b+1)·hidden of ``weight_<s>``.
    """
    out: dict[str, list[int]] = {}
    for (_, j), (src, b) in layer.blocks.items():
        if j >= 1:
            out.setdefault(src, []).append(b)
    return {src: sorted(bs) for src, bs in out.items()}


def noise_epsilon(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    """The paper's noise: the first draw of NumPy's legacy global generator after ``np.random.seed(seed)``.

    Returns:
        float64 array of ``shape`` (docs/METRICS.md "noise variants": the same ε
        serves every amplitude). The global NumPy state is restored after.
    """
    state = np.random.get_state()
    try:
        np.random.seed(seed)
        return np.random.normal(size=shape)
    finally:
        np.random.set_state(state)


@functools.lru_cache(maxsize=2)
def _epsilon(seed: int, shape: tuple[int, ...]) -> Tensor:
    # The same draw serves every architecture of a sweep (same seed and batch
    # shape); drawing 1.4 M normals costs about a tenth of a forward pass.
    return torch.from_numpy(noise_epsilon(seed, shape))
