"""Passes over a NAS-Bench-NLP language model for the training-free metrics.

METRICS.md "RNN space": the input is the PTB scoring minibatch ``x`` [70, 50];
``e`` = embedding output [70, 50, 400]; ``y`` = the last layer's outputs
(no decoder). Three passes cover every paper metric:

- ``forward``: no-grad forward recording the hidden states fed into every
  cell call and the activation codes. Served by ``grad`` when that runs anyway.
- ``grad``: the same forward with autograd, then the backward of Σ y; it adds
  ∂e (the Jacobian J), ∂ of every parameter, and ∂ of every state as it leaves
  its cell.
- ``noise``: the layers run on ``e + a·v·ε`` for every noise amplitude at once
  (stacked along the batch axis: samples never interact in an RNN), then the
  backward of Σ y to the noised inputs only; weight gradients are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from tfnas.engine import ScoringContext, register_pass
from tfnas.models.awd_lm import AWDLanguageModel
from tfnas.models.rnn_cell import CellCapture, RecurrentLayer

#: Noise amplitudes of the paper's Jacobian-with-noise metrics (METRICS.md).
AMPLITUDES = {"small": 0.1, "large": 10.0, "very_large": 100.0}
#: Which amplitudes each noise metric family reads.
NOISE_NEEDS = {
    "jacobian_small_noise": ("small",),
    "jacobian_large_noise": ("large",),
    "jacobian_more_noise": ("small", "large", "very_large"),
}


@dataclass
class RNNForward:
    """Outputs of the ``forward`` pass (and of ``grad``, which extends it).

    Attributes:
        e: [seq, batch, emsize] embedding output.
        states: per layer l, the states h^l_t fed into the cell as ``h_prev_0``
            at t = 0..seq-1 (t = 0 is the zero state), [seq, batch, hidden_l].
        codes: the activation codes ``a > 0`` of every activation-node call,
            each [batch, hidden_l] bool; None if no metric asked for them.
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
        weight_grads: per layer, ``(source, block) -> ∂(Σ y)/∂W`` [hidden, size]
            for the weight blocks that synaptic saliency reads (see
            :func:`saliency_blocks`; blocks of the stacked weights of
            :class:`~tfnas.models.rnn_cell.RecurrentLayer`); None unless requested.
        embedding_grad: ∂(Σ y)/∂E [ntoken, emsize]; None unless read.
        noise: amplitude key -> J_a [seq, batch, emsize] when noise metrics
            were requested (their inputs ride in the same batch).
        memo: scores of these gradients that several metrics read (e.g. S(J)),
            filled by the metrics; dropped with the pass output.
    """

    jacobian: Tensor | None = None
    state_grads: list[Tensor] | None = None
    weight_grads: list[dict[tuple[str, int], Tensor]] | None = None
    embedding_grad: Tensor | None = None
    noise: dict[str, Tensor] | None = None
    memo: dict = field(default_factory=dict, repr=False)


def _lm(ctx: ScoringContext) -> AWDLanguageModel:
    model = ctx.model
    if not isinstance(model, AWDLanguageModel):
        raise TypeError(f"RNN passes need an AWDLanguageModel, got {type(model).__name__}")
    return model


def _tokens(ctx: ScoringContext) -> Tensor:
    x = ctx.batch[0] if isinstance(ctx.batch, (tuple, list)) else ctx.batch
    return x.to(ctx.model.encoder.weight.device)


def _states(steps: list[Tensor], rows: int | None = None) -> Tensor:
    """h_prev_0 per step: the zero state, then each step's output but the last; [seq, rows, hidden]."""
    out = torch.stack([s[:rows] for s in steps[:-1]]) if len(steps) > 1 else None
    first = torch.zeros_like(steps[0][:rows]).unsqueeze(0)
    return first if out is None else torch.cat([first, out])


def _wants_codes(ctx: ScoringContext) -> bool:
    return "activation_distance" in ctx.requested or ctx.options.get("capture_codes", False)


def _noise_keys(ctx: ScoringContext) -> list[str]:
    """The amplitudes to run: ``options["amplitudes"]`` if given, else those the requested metrics read."""
    if "amplitudes" in ctx.options:
        return list(ctx.options["amplitudes"])
    return [k for k in AMPLITUDES if any(k in NOISE_NEEDS.get(m, ()) for m in ctx.requested)]


def _noised(e: Tensor, seed: int, keys: list[str]) -> list[Tensor]:
    """float32(e + a·v·ε) for each amplitude key, computed in float64 (METRICS.md)."""
    e64 = e.double()
    eps = torch.from_numpy(noise_epsilon(seed, tuple(e.shape))).to(e.device)
    v = e64.var(dim=1, unbiased=False, keepdim=True)
    return [(e64 + AMPLITUDES[k] * v * eps).float() for k in keys]


@register_pass("rnn", "forward", served_by=("grad",))
def forward_pass(ctx: ScoringContext) -> RNNForward:
    """No-grad forward that records states and (if asked) activation codes."""
    model = _lm(ctx)
    capture = CellCapture(activation_codes=[] if _wants_codes(ctx) else None, leaves=True)
    with torch.no_grad():
        e = model.encoder(_tokens(ctx))
        model.run_layers(e, capture=capture)
    return RNNForward(e, [_states(s) for s in capture.steps], capture.activation_codes)


@register_pass("rnn", "grad")
def grad_pass(ctx: ScoringContext) -> RNNGrad:
    """Forward with autograd, then one backward of Σ y (METRICS.md "one pass").

    When noise metrics are requested, their noised inputs ride along in the
    same batch (samples never interact in an RNN), so one forward and one
    backward serve every metric. Weights are detached: the backward computes
    input gradients only, and the weight gradients of the clean samples that
    synaptic saliency reads are rebuilt afterwards, per source, as one large
    product Σ_t ∂P_tᵀ · in_t over the recorded products P_t = in_t Wᵀ,
    restricted to the blocks it reads.
    """
    model = _lm(ctx)
    tokens = _tokens(ctx)
    n = tokens.shape[1]
    keys = _noise_keys(ctx)
    want_weights = "synaptic_saliency" in ctx.requested
    with torch.no_grad():
        e = model.encoder(tokens)
    e_all = torch.cat([e, *_noised(e, ctx.seed, keys)], dim=1) if keys else e.clone()
    e_all.requires_grad_(True)
    capture = CellCapture(
        activation_codes=[] if _wants_codes(ctx) else None,
        code_rows=n,
        leaves=True,
        detach_params=True,
        products=[] if want_weights else None,
    )
    # The zero initial state takes part in autograd, so that every later state and
    # product is differentiable, also those that do not depend on the input (e.g.
    # tanh(bias) at t = 0): the saliencies need their gradients too.
    hidden = [
        tuple(e_all.new_zeros(e_all.shape[1], layer.hidden_size, requires_grad=True) for _ in range(layer.num_hidden))
        for layer in model.layers
    ]
    _, y, _ = model.run_layers(e_all, hidden, capture=capture)
    # States t = 1..seq-1 are the outputs of steps 0..seq-2 as they leave the cell.
    leaves = [s for steps in capture.steps for s in steps[:-1]]
    wanted = [saliency_blocks(layer) for layer in model.layers] if want_weights else []
    prods = [p for rec, w in zip(capture.products or [], wanted) for src in w for _, p in rec[src]]
    grads = torch.autograd.grad(y.sum(), [e_all, *leaves, *prods], allow_unused=True)
    g_e = grads[0]
    g_of = {id(t): g for t, g in zip(leaves + prods, grads[1:])}

    def grad_of(t: Tensor) -> Tensor:
        g = g_of.get(id(t))
        return torch.zeros_like(t) if g is None else g

    state_grads = [
        torch.stack([grad_of(s)[:n] for s in steps[:-1]]) if len(steps) > 1 else steps[0].new_zeros(0, n, steps[0].shape[1])
        for steps in capture.steps
    ]
    weight_grads = emb_grad = None
    if want_weights:
        weight_grads = []
        for layer, rec, blocks_of in zip(model.layers, capture.products, wanted):
            h = layer.hidden_size
            per_block = {}
            for src, blocks in blocks_of.items():
                cols = torch.cat([torch.arange(b * h, (b + 1) * h, device=e.device) for b in blocks])
                g_mat = torch.cat([grad_of(p)[..., :n, :].index_select(-1, cols).reshape(-1, cols.numel()) for _, p in rec[src]])
                in_mat = torch.cat([x[..., :n, :].reshape(-1, x.shape[-1]) for x, _ in rec[src]]).detach()
                full = g_mat.t() @ in_mat  # [len(blocks)·hidden, size]
                per_block.update({(src, b): full[i * h : (i + 1) * h] for i, b in enumerate(blocks)})
            weight_grads.append(per_block)
        emb = model.encoder.weight
        emb_grad = torch.zeros_like(emb).index_add_(0, tokens.reshape(-1), g_e[:, :n].reshape(-1, emb.shape[1]))
    return RNNGrad(
        e,
        [_states([s.detach() for s in steps], n) for steps in capture.steps],
        capture.activation_codes,
        jacobian=g_e[:, :n],
        state_grads=state_grads,
        weight_grads=weight_grads,
        embedding_grad=emb_grad,
        noise={k: g_e[:, n * (j + 1) : n * (j + 2)] for j, k in enumerate(keys)} if keys else None,
    )


def saliency_blocks(layer: RecurrentLayer) -> dict[str, list[int]]:
    """``source -> blocks`` of the stacked weights that synaptic saliency reads.

    METRICS.md: the weights of inputs 2…n of every linear node (the first
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
        float64 array of ``shape`` (METRICS.md "noise variants": the same ε
        serves every amplitude). The global NumPy state is restored after.
    """
    state = np.random.get_state()
    try:
        np.random.seed(seed)
        return np.random.normal(size=shape)
    finally:
        np.random.set_state(state)


@dataclass
class RNNNoise:
    """Outputs of the standalone ``noise`` pass (``grad`` has the same ``noise`` field).

    Attributes:
        noise: amplitude key -> J_a [seq, batch, emsize].
    """

    noise: dict[str, Tensor]


@register_pass("rnn", "noise", served_by=("grad",))
def noise_pass(ctx: ScoringContext) -> RNNNoise:
    """Jacobians of Σ y with respect to noised embedding outputs.

    For each amplitude a (METRICS.md): input = float32(e + a·v·ε) computed in
    float64, v = population variance of e over the batch axis [seq, 1, emsize];
    the layers run from the zero state; J_a = ∂(Σ y)/∂input.

    Returns:
        :class:`RNNNoise` with J_a for the amplitudes the requested metrics
        read ("small", "large", "very_large"). When the ``grad`` pass runs
        anyway, it computes these in its own batch and this pass is skipped.
    """
    model = _lm(ctx)
    keys = _noise_keys(ctx) or list(AMPLITUDES)
    with torch.no_grad():
        e = model.encoder(_tokens(ctx))
    noised = torch.cat(_noised(e, ctx.seed, keys), dim=1).requires_grad_(True)
    _, y, _ = model.run_layers(noised)
    (jac,) = torch.autograd.grad(y.sum(), [noised])
    return RNNNoise(dict(zip(keys, jac.chunk(len(keys), dim=1))))
