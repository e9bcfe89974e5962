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

import contextlib
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd import forward_ad
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
    log_positive,
    register_proxies,
    seeded_generator,
    synflow_log_score,
)
from tfnas.scoring.rnn import bptt
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


def _rnn_loss(ctx: ScoringContext, hvp: bool) -> LossOutputs:
    """The loss pass by hand: a recorded forward, the decoder's cross-entropy and the backward through time.

    No autograd graph: the forward runs the model's cell under no_grad through
    :func:`torch.func.functional_call`, recording every cell value
    (:class:`~tfnas.models.rnn_cell.CellCapture`); ∂L/∂logits = (softmax − onehot)/N
    goes back through the tied decoder (∂y = D E, ∂E += Dᵀ y), then through each
    layer with :func:`tfnas.scoring.rnn.bptt.layer_backward`, whose product
    gradients ∂P give every stacked weight's gradient as one product
    Σ_t ∂P_tᵀ in_t and, block (node, 0), every linear node's output gradient
    (Fisher's ∂L/∂a); ∂E gets the embedding rows' gradients by index_add.

    GraSP (``hvp``): the same computation on forward-mode dual tensors
    (:mod:`torch.autograd.forward_ad`) whose tangent is θ itself (every weight
    block and E; biases carry none): the primal is g = ∂L/∂θ and the tangent is
    H θ, the Hessian of L over the proxy weights times θ, both in one pass
    (forward-over-reverse). GraSP's θᵀ H g then equals gᵀ (H θ) (H is symmetric),
    summed in float64 into ``LossOutputs.theta_hg``. The
    weights themselves stay plain: as Ẇ = W, the tangent of a product W·a is
    W·(a + ȧ), which the cell's forward and the backward through time form
    with one product each (``CellCapture.weight_tangent``), where dual weights
    would cost two.
    """
    model = language_model(ctx)
    tokens, targets = token_batch(ctx)
    if targets is None:
        raise ValueError("RNN loss proxies need the batch's next-token targets: batch must be (x, y)")
    if targets.shape != tokens.shape:
        raise ValueError(f"targets {tuple(targets.shape)} do not match inputs {tuple(tokens.shape)}")
    want_fisher = ctx.wants("fisher")
    want_codes = ctx.wants("proxy_codes")
    with torch.no_grad(), (forward_ad.dual_level() if hvp else contextlib.nullcontext()):
        # With GraSP the weights' tangent is θ itself, carried by the products (CellCapture.weight_tangent).
        params = layer_parameters(model, Tensor.detach)
        embedding = model.encoder.weight.detach()
        emb = F.embedding(tokens, embedding)  # eval mode: no embedding dropout
        if hvp:
            emb = forward_ad.make_dual(emb, emb)  # the tangent of E is E, so that of E[x] is E[x]
        capture = CellCapture(layers=[], input_codes=[] if want_codes else None, weight_tangent=hvp)
        y = run_layers_with(model, params, emb, capture)
        loss, logits, d_logits, d_out, g_emb = _decoder_backward(
            y, embedding, model.decoder.bias.detach(), targets, hvp
        )
        layer_grads = [None] * len(model.layers)
        for i in reversed(range(len(model.layers))):
            layer = model.layers[i]
            layer_grads[i] = bptt.layer_backward(
                layer, capture.layers[i], d_out, product_sources=tuple(layer.sources), weights=params[i],
                weight_tangent=hvp,
            )
            d_out = layer_grads[i].inputs
        g_emb = g_emb.index_add(0, tokens.reshape(-1), d_out.reshape(-1, d_out.shape[-1]))
        g_stacked = []
        for layer, record, grads in zip(model.layers, capture.layers, layer_grads):
            per_source = {}
            for src in layer.sources:
                inp = record.inputs if src == "x" else torch.stack([step[src] for step in record.steps])
                g_p = grads.products[src]
                g_w = g_p.reshape(-1, g_p.shape[-1]).t() @ inp.reshape(-1, inp.shape[-1])  # Σ_t ∂P_tᵀ in_t
                per_source[layer.stacked_name(src)] = g_w
            g_stacked.append(per_source)
        theta_hg = None
        if hvp:
            theta_hg = _sum_products([
                (forward_ad.unpack_dual(g).primal, forward_ad.unpack_dual(g).tangent)
                for g in [*(g for per in g_stacked for g in per.values()), g_emb]
            ])
            primal = lambda t: forward_ad.unpack_dual(t).primal  # noqa: E731
            g_stacked = [{k: primal(v) for k, v in per.items()} for per in g_stacked]
            g_emb = primal(g_emb)
        fisher = None
        if want_fisher:
            fisher = []
            for i, (layer, record, grads) in enumerate(zip(model.layers, capture.layers, layer_grads)):
                h = layer.hidden_size
                for node in (n for n in layer.recipe.order if n in layer.linear_nodes):
                    a = torch.stack([forward_ad.unpack_dual(step[node]).primal for step in record.steps], dim=1)
                    src, b = layer.blocks[(node, 0)]  # a linear node's output gradient is each product's
                    g = forward_ad.unpack_dual(grads.products[src]).primal[..., b * h : (b + 1) * h]
                    fisher.append((f"layers.{i}.{node}", fisher_terms(a, g.transpose(0, 1), channel_dim=2)))
            seq, batch = tokens.shape
            by_sample = [t.view(seq, batch, -1).transpose(0, 1) for t in (logits, d_logits)]  # [batch, seq, ntoken]
            fisher.append(("decoder", fisher_terms(*by_sample, channel_dim=2)))
        kernel = None
        if want_codes:
            codes = NaswotKernel()
            for c in capture.input_codes:
                codes.add(c)
            kernel = codes.kernel
    return LossOutputs(
        loss,
        _proxy_weight_names(model),
        _proxy_weights(model, params, embedding),
        _proxy_weights(model, g_stacked, g_emb),
        fisher,
        kernel,
        theta_hg=theta_hg,
    )


def _decoder_backward(
    y: Tensor, embedding: Tensor, bias: Tensor, targets: Tensor, hvp: bool
) -> tuple[float, Tensor, Tensor, Tensor, Tensor]:
    """The tied decoder, the mean cross-entropy and their backward, by hand (with GraSP's tangent).

    Args:
        y: the last layer's output [seq, batch, emsize]; with ``hvp`` a
            forward-mode dual tensor whose tangent is ẏ.
        embedding: E [ntoken, emsize] (plain; with ``hvp`` its tangent is E itself).
        bias: the decoder bias [ntoken] (no tangent).
        targets: [seq, batch] next-token ids.
        hvp: carry the tangents.

    Returns:
        (L, logits z [seq·batch, ntoken], D = ∂L/∂z = (softmax(z) − onehot)/N,
        ∂L/∂y [seq, batch, emsize], the decoder's ∂L/∂E [ntoken, emsize]); with
        ``hvp`` the last two are dual tensors carrying their tangents: with
        ż = (ẏ + y) Eᵀ and Ḋ = softmax(z) ⊙ (ż − ⟨softmax(z), ż⟩) / N,
        (∂L/∂y)˙ = (Ḋ + D) E and (∂L/∂E)˙ = Ḋᵀ y + Dᵀ ẏ. Written out rather than
        left to forward-mode AD because Ė = E saves two of the nine
        [seq·batch, ntoken] products and several passes over those arrays,
        the largest of the pass.
    """
    y0, y_t = forward_ad.unpack_dual(y) if hvp else (y, None)
    y2 = y0.reshape(-1, y0.shape[-1])
    n = y2.shape[0]
    logits = torch.addmm(bias, y2, embedding.t())
    d = F.log_softmax(logits, dim=-1)
    tgt = targets.reshape(-1, 1)
    loss = float(-d.gather(1, tgt).sum() / n)
    d = d.exp_()  # p = softmax(z)
    d_t = None
    if hvp:
        yt2 = y_t.reshape(-1, y_t.shape[-1])
        d_t = (yt2 + y2) @ embedding.t()  # ż
        d_t.sub_((d * d_t).sum(dim=1, keepdim=True)).mul_(d).div_(n)  # Ḋ
    d.scatter_add_(1, tgt, d.new_full((1, 1), -1.0).expand(n, 1)).div_(n)  # D = (p − onehot) / N
    g_y = (d @ embedding).view(y0.shape)
    g_emb = d.t() @ y2
    if hvp:
        g_emb_t = d_t.t() @ y2
        g_emb_t.addmm_(d.t(), y_t.reshape(-1, y_t.shape[-1]))
        g_y_t = (d_t.add_(d) @ embedding).view(y0.shape)
        d_t = None
        g_y, g_emb = forward_ad.make_dual(g_y, g_y_t), forward_ad.make_dual(g_emb, g_emb_t)
    return loss, logits, d, g_y, g_emb


def _sum_products(pairs: list[tuple[Tensor, Tensor]]) -> float:
    """Σ a ⊙ b over the pairs, each product summed in float64."""
    total = torch.zeros((), dtype=torch.float64)
    for a, b in pairs:
        total = total + (a.double() * b.double()).sum().cpu()
    return float(total)


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
