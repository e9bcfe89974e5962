"""The zero-cost proxy passes on NAS-Bench-NLP language models (:mod:`tfnas.scoring.proxies` defines the proxies).

x, the input of a proxy, is the embedding lookup [seq, batch, emsize]. The
loss is the mean next-token cross-entropy over the batch (``y`` of the
``(x, y)`` batch) through the LM's tied decoder. The passes run the model's
own cell (:class:`~tfnas.models.rnn_cell.RecurrentLayer`); where they need
other tensors in place of its parameters (detached leaves, SynFlow's float64
|θ|) they call it through :func:`torch.func.functional_call`.

Proxy weights θ: every weight matrix W_j of every linear node (hidden ×
size(in_j), one per input j, all layers) and the embedding matrix E (tied
with the decoder, counted once). Biases are not weights here.

``proxy_codes`` is served by the loss passes (their forward is the clean
batch): asked for it, they accumulate NASWOT's kernel too.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call

from tfnas.models.awd_lm import AWDLanguageModel
from tfnas.models.rnn_cell import CellCapture
from tfnas.scoring.api import ScoringContext, UndefinedScore, register_pass
from tfnas.scoring.proxies import (
    ZEN_GAMMA,
    CodesOutputs,
    LossOutputs,
    SynflowOutputs,
    ZenOutputs,
    fisher_terms,
    hessian_grad,
    log_positive,
    register_proxies,
    seeded_generator,
    synflow_log_score,
)
from tfnas.scoring.rnn.passes import language_model, token_batch
from tfnas.scoring.scores import NaswotKernel


def run_layers_with(model: AWDLanguageModel, params: list[dict[str, Tensor]], x: Tensor, capture=None) -> Tensor:
    """The model's recurrent layers on ``x`` [seq, batch, emsize] with their parameters replaced by ``params``.

    :func:`torch.func.functional_call` runs each layer's own forward (the one
    cell implementation) on the given tensors, one dict per layer named as in
    ``layer.named_parameters()``. The model is in eval mode, so the locked
    dropouts between the layers are the identity.

    Returns:
        The last layer's output [seq, batch, emsize].
    """
    for layer, p in zip(model.layers, params):
        x, _ = functional_call(layer, p, (x,), {"capture": capture})
    return x


def layer_parameters(model: AWDLanguageModel, transform: Callable[[Tensor], Tensor]) -> list[dict[str, Tensor]]:
    """Per layer, ``transform`` of each parameter (e.g. a detached leaf, a float64 copy)."""
    return [{name: transform(p) for name, p in layer.named_parameters()} for layer in model.layers]


def _proxy_weights(model: AWDLanguageModel, per_layer: list[dict[str, Tensor]], embedding: Tensor) -> list[Tensor]:
    """θ: for each layer, linear node and input j, the block W_j of ``per_layer``'s stacked tensors; then E.

    ``per_layer`` holds tensors shaped as the layers' parameters (the
    parameters, their gradients, ...); each W_j is a view of one of them.
    """
    blocks = []
    for layer, tensors in zip(model.layers, per_layer):
        for node in layer.linear_nodes:
            for j in range(len(layer.recipe.nodes[node].inputs)):
                name, rows = layer.weight_slot(node, j)
                blocks.append(tensors[name][rows])
    return blocks + [embedding]


def _proxy_weight_names(model: AWDLanguageModel) -> list[str]:
    names = [
        f"layers.{i}.{node}.W{j}"
        for i, layer in enumerate(model.layers)
        for node in layer.linear_nodes
        for j in range(len(layer.recipe.nodes[node].inputs))
    ]
    return names + ["encoder.weight"]


def _leaf(t: Tensor) -> Tensor:
    return t.detach().requires_grad_(True)


def _stacked_weights(params: list[dict[str, Tensor]]) -> list[Tensor]:
    """The stacked weight tensors of every layer (every parameter but the biases), in order."""
    return [t for p in params for name, t in p.items() if name != "bias"]


def _by_layer(params: list[dict[str, Tensor]], flat: list[Tensor]) -> list[dict[str, Tensor]]:
    """``flat`` (in :func:`_stacked_weights` order) back into per-layer dicts keyed like ``params``."""
    it = iter(flat)
    return [{name: next(it) for name in p if name != "bias"} for p in params]


def _rnn_loss(ctx: ScoringContext, hvp: bool) -> LossOutputs:
    model = language_model(ctx)
    tokens, targets = token_batch(ctx)
    if targets is None:
        raise ValueError("RNN loss proxies need the batch's next-token targets: batch must be (x, y)")
    if targets.shape != tokens.shape:
        raise ValueError(f"targets {tuple(targets.shape)} do not match inputs {tuple(tokens.shape)}")
    want_fisher = ctx.wants("fisher")
    want_codes = ctx.wants("proxy_codes")
    # Detached leaves sharing the model's storage: gradients never reach the model's .grad.
    params = layer_parameters(model, _leaf)
    embedding = _leaf(model.encoder.weight)
    leaves = [*_stacked_weights(params), embedding]
    capture = CellCapture(layers=[] if want_fisher else None, input_codes=[] if want_codes else None)
    emb = F.embedding(tokens, embedding)  # eval mode: no embedding dropout
    y = run_layers_with(model, params, emb, capture)
    logits = F.linear(y, embedding, model.decoder.bias.detach())
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
    # Fisher's ops: every linear node's output at every step (recorded by the cell), then the decoder's logits.
    linear_outs = []
    for i, (layer, record) in enumerate(zip(model.layers, capture.layers or [])):
        for node in (n for n in layer.recipe.order if n in layer.linear_nodes):
            linear_outs.append((f"layers.{i}.{node}", [step[node] for step in record.steps]))
    acts = [a for _, steps in linear_outs for a in steps] + ([logits] if want_fisher else [])
    grads = torch.autograd.grad(loss, [*leaves, *acts], create_graph=hvp, allow_unused=True)
    g_leaves = [torch.zeros_like(t) if g is None else g for t, g in zip(leaves, grads[: len(leaves)])]
    fisher = None
    if want_fisher:
        a_grads = grads[len(leaves) :]
        fisher, k = [], 0
        for name, steps in linear_outs:
            a = torch.stack([s.detach() for s in steps], dim=1)  # [batch, seq, hidden]
            g = torch.stack([torch.zeros_like(s) if gg is None else gg.detach()
                             for s, gg in zip(steps, a_grads[k : k + len(steps)])], dim=1)
            k += len(steps)
            fisher.append((name, fisher_terms(a, g, channel_dim=2)))
        fisher.append(("decoder", fisher_terms(logits.transpose(0, 1), a_grads[k].detach().transpose(0, 1), 2)))
    kernel = None
    if want_codes:
        codes = NaswotKernel()
        for c in capture.input_codes:
            codes.add(c)
        kernel = codes.kernel

    def theta(flat: list[Tensor]) -> list[Tensor]:
        return _proxy_weights(model, _by_layer(params, flat[:-1]), flat[-1])

    hg = theta(hessian_grad(leaves, g_leaves)) if hvp else None
    return LossOutputs(
        float(loss.detach()), _proxy_weight_names(model), theta([t.detach() for t in leaves]),
        theta([g.detach() for g in g_leaves]), hg, fisher, kernel,
    )


@register_pass("rnn", "proxy_loss", served_by=("proxy_loss_hvp",), captures=("fisher",))
def rnn_loss_pass(ctx: ScoringContext) -> LossOutputs:
    """Next-token loss forward and one backward (RNN); see the module docstring.

    L = mean cross-entropy of the tied decoder's logits [seq, batch, ntoken]
    against the batch's targets ``y`` [seq, batch]; θ = every W_j and E.

    Raises:
        TypeError: the model is not an :class:`AWDLanguageModel`.
        ValueError: the batch has no targets, or their shape differs from the inputs'.
    """
    return _rnn_loss(ctx, hvp=False)


@register_pass("rnn", "proxy_loss_hvp", captures=("fisher",))
def rnn_loss_hvp_pass(ctx: ScoringContext) -> LossOutputs:
    """``proxy_loss`` with a create_graph backward and GraSP's Hessian-gradient product (RNN).

    Raises:
        TypeError, ValueError: as :func:`rnn_loss_pass`.
    """
    return _rnn_loss(ctx, hvp=True)


@register_pass("rnn", "proxy_codes", served_by=("proxy_loss_hvp", "proxy_loss"))
def rnn_codes_pass(ctx: ScoringContext) -> CodesOutputs:
    """NASWOT codes 1[z > 0] of every activation node's input, all steps and layers, clean batch (RNN)."""
    model = language_model(ctx)
    tokens, _ = token_batch(ctx)
    capture = CellCapture(input_codes=[])
    with torch.no_grad():
        model.run_layers(model.encoder(tokens), capture=capture)
    codes = NaswotKernel()
    for c in capture.input_codes:
        codes.add(c)
    if codes.kernel is None:
        raise UndefinedScore("naswot: the cell has no activation node")
    return CodesOutputs(codes.kernel, codes.bits)


@register_pass("rnn", "proxy_synflow")
def rnn_synflow_pass(ctx: ScoringContext) -> SynflowOutputs:
    """SynFlow (Tanaka et al. 2020), data-free, on the RNN LM.

    θ → |θ| in float64 (every parameter, on copies), input x = ones
    [seq, 1, emsize] (seq = the scoring batch's length), R = Σ of the tied
    decoder's logits [seq, 1, ntoken]; score ln Σ_θ |θ ⊙ ∂R/∂θ| over the proxy
    weights (E enters through the decoder only). The backward seed is 2^-k
    with 2^k ≥ max logit (an exact rescaling) and k ln 2 is added back.
    """
    model = language_model(ctx)
    tokens, _ = token_batch(ctx)

    def absolute(t: Tensor) -> Tensor:
        return t.detach().to(torch.float64).abs().requires_grad_(True)

    params = layer_parameters(model, absolute)
    embedding = absolute(model.encoder.weight)
    ones = torch.ones(tokens.shape[0], 1, model.emsize, dtype=torch.float64, device=tokens.device)
    logits = F.linear(run_layers_with(model, params, ones), embedding, absolute(model.decoder.bias))
    # Every row of a stacked weight is some W_j: the terms are those of θ, block by block.
    return synflow_log_score(logits, [*_stacked_weights(params), embedding])


@register_pass("rnn", "proxy_zen")
def rnn_zen_pass(ctx: ScoringContext) -> ZenOutputs:
    """Zen-score's forwards (Lin et al. 2021) on the RNN: x, ε ~ N(0, 1) [seq, batch, emsize].

    f = the last layer's output (the pre-decoder feature map, as Zen takes the
    pre-pooling one); Δ = mean over samples of Σ_{t,d} |f(x) − f(x + 0.01 ε)|.
    No normalisation layers: the scale term is 0.
    """
    model = language_model(ctx)
    tokens, _ = token_batch(ctx)
    g = seeded_generator(ctx.seed)
    shape = (tokens.shape[0], tokens.shape[1], model.emsize)
    x = torch.randn(shape, generator=g).to(tokens.device)
    eps = torch.randn(shape, generator=g).to(tokens.device)
    with torch.no_grad():
        _, both, _ = model.run_layers(torch.cat([x, x + ZEN_GAMMA * eps], dim=1))  # samples never interact
    f0, f1 = both.double().chunk(2, dim=1)
    delta = (f0 - f1).abs().sum(dim=(0, 2)).mean()
    return ZenOutputs(log_positive(delta, "zen", "f(x) = f(x + γε) exactly (Δ = 0, log undefined)"), 0.0)


register_proxies("rnn")
