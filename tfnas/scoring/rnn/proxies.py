"""The zero-cost proxy passes on NAS-Bench-NLP language models (:mod:`tfnas.scoring.proxies` defines the proxies).

x, the input of a proxy, is the embedding lookup [seq, batch, emsize];
gradients with respect to the input are taken there. The loss is the mean
next-token cross-entropy over the batch (``y`` of the ``(x, y)`` batch)
through the LM's tied decoder.

Proxy weights θ: every weight matrix W_j of every linear node (hidden ×
size(in_j), one per input j, all layers) and the embedding matrix E (tied
with the decoder, counted once). Biases are not weights here.

``proxy_codes`` is served by the loss passes (their forward is the clean
batch): asked for it, they accumulate NASWOT's kernel too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from tfnas.models.awd_lm import AWDLanguageModel
from tfnas.models.rnn_cell import RecurrentLayer, combine_inputs
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

_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "activation_tanh": torch.tanh,
    "activation_sigm": torch.sigmoid,
    "activation_leaky_relu": lambda t: F.leaky_relu(t, 0.01),
}


@dataclass
class RNNParams:
    """The tensors :func:`run_rnn` computes with (the model's, or transformed copies).

    Attributes:
        weights: per layer, ``(node, j) -> W_j`` [hidden, size(in_j)].
        biases: per layer, ``node -> b`` [hidden].
        embedding: E [ntoken, emsize] (the decoder's tied weight too).
        decoder_bias: [ntoken].
    """

    weights: list[dict[tuple[str, int], Tensor]]
    biases: list[dict[str, Tensor]]
    embedding: Tensor
    decoder_bias: Tensor

    def proxy_weights(self) -> tuple[list[str], list[Tensor]]:
        """Names and tensors of the proxy weights θ: every W_j of every layer, then E."""
        names, tensors = [], []
        for i, ws in enumerate(self.weights):
            for (node, j), w in ws.items():
                names.append(f"layers.{i}.{node}.W{j}")
                tensors.append(w)
        return names + ["encoder.weight"], tensors + [self.embedding]


def rnn_params(model: AWDLanguageModel, transform: Callable[[Tensor], Tensor]) -> RNNParams:
    """:class:`RNNParams` of ``model`` with ``transform`` applied to every tensor (e.g. a detached leaf)."""
    weights, biases = [], []
    for layer in model.layers:
        nodes = layer.recipe.nodes
        weights.append(
            {(n, j): transform(layer.weight(n, j)) for n in layer.linear_nodes for j in range(len(nodes[n].inputs))}
        )
        biases.append({n: transform(layer.node_bias(n)) for n in layer.linear_nodes})
    return RNNParams(weights, biases, transform(model.encoder.weight), transform(model.decoder.bias))


def _run_layer(
    layer: RecurrentLayer,
    weights: dict[tuple[str, int], Tensor],
    biases: dict[str, Tensor],
    inputs: Tensor,
    linear_outs: dict[str, list[Tensor]] | None,
    codes: NaswotKernel | None,
) -> Tensor:
    """One recurrent layer (docs/SPACES.md §1 cell semantics) with explicit tensors: [seq, B, in] -> [seq, B, hidden].

    The same computation as :class:`RecurrentLayer` in eval mode (zero initial
    state), written out so that the proxies can reach every linear node's
    output and every activation's input.
    """
    seq, bsz, _ = inputs.shape
    h = layer.hidden_size
    recipe = layer.recipe
    # Weights that read the same source are stacked so the source is multiplied once per step.
    keys_by_src: dict[str, list[tuple[str, int]]] = {}
    for key, (src, b) in sorted(layer.blocks.items(), key=lambda kv: kv[1][1]):
        keys_by_src.setdefault(src, []).append(key)
    stacked = {src: torch.cat([weights[k] for k in keys]) for src, keys in keys_by_src.items()}
    hoisted = None
    if "x" in stacked:
        # unbind, not hoisted[t]: one backward node for all steps (a per-step select
        # makes a full-size zero gradient per step, very slow under create_graph).
        hoisted = (inputs.reshape(seq * bsz, -1) @ stacked["x"].t()).view(seq, bsz, -1).unbind(0)
    hidden = [inputs.new_zeros(bsz, h) for _ in range(recipe.num_hidden)]
    outs = []
    for t in range(seq):
        values: dict[str, Tensor] = {f"h_prev_{k}": hidden[k] for k in range(recipe.num_hidden)}
        prods: dict[str, tuple[Tensor, ...]] = {}
        if hoisted is not None:
            prods["x"] = hoisted[t].split(h, dim=1)
        for name in recipe.order:
            node = recipe.nodes[name]
            if node.op == "linear":
                acc = biases[name]
                for j, src in enumerate(node.inputs):
                    if src not in prods:
                        prods[src] = (values[src] @ stacked[src].t()).split(h, dim=1)
                    acc = acc + prods[src][layer.blocks[(name, j)][1]]
                if linear_outs is not None:
                    linear_outs.setdefault(name, []).append(acc)
                out = acc
            elif node.op in _ACTIVATIONS:
                z = values[node.inputs[0]]
                if codes is not None:
                    codes.add(z > 0)  # the unit's side: pre-activation sign
                out = _ACTIVATIONS[node.op](z)
            else:
                out = combine_inputs(node.op, [values[i] for i in node.inputs], name)
            values[name] = out
        outs.append(values["h_new_0"])
        hidden = [values[f"h_new_{k}"] for k in range(recipe.num_hidden)]
    return torch.stack(outs)


def run_rnn(
    model: AWDLanguageModel,
    params: RNNParams,
    emb: Tensor,
    linear_outs: list[dict[str, list[Tensor]]] | None = None,
    codes: NaswotKernel | None = None,
) -> Tensor:
    """The recurrent stack of ``model`` computed with ``params`` on an embedding output (eval mode).

    Args:
        model: supplies the recipe and sizes (its own tensors are not read).
        params: the tensors to compute with.
        emb: [seq, batch, emsize] embedding output.
        linear_outs: when a list, one dict per layer ``node -> [output per step]``
            ([batch, hidden] each) is appended.
        codes: when given, receives 1[z > 0] of every activation node's input z
            [batch, hidden], every node, step and layer.

    Returns:
        The last layer's output y [seq, batch, emsize].
    """
    x = emb
    for i, layer in enumerate(model.layers):
        rec = None
        if linear_outs is not None:
            rec = {}
            linear_outs.append(rec)
        x = _run_layer(layer, params.weights[i], params.biases[i], x, rec, codes)
    return x


def _leaf(t: Tensor) -> Tensor:
    return t.detach().requires_grad_(True)


def _rnn_loss(ctx: ScoringContext, hvp: bool) -> LossOutputs:
    model = language_model(ctx)
    tokens, targets = token_batch(ctx)
    if targets is None:
        raise ValueError("RNN loss proxies need the batch's next-token targets: batch must be (x, y)")
    if targets.shape != tokens.shape:
        raise ValueError(f"targets {tuple(targets.shape)} do not match inputs {tuple(tokens.shape)}")
    want_fisher = ctx.wants("fisher")
    codes = NaswotKernel() if ctx.wants("proxy_codes") else None
    # Detached leaves sharing the model's storage: gradients never reach the model's .grad.
    p = rnn_params(model, _leaf)
    names, theta = p.proxy_weights()
    emb = F.embedding(tokens, p.embedding)  # eval mode: no embedding dropout
    linear_outs: list[dict[str, list[Tensor]]] | None = [] if want_fisher else None
    y = run_rnn(model, p, emb, linear_outs, codes)
    logits = F.linear(y, p.embedding, p.decoder_bias)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
    acts = [a for rec in linear_outs or [] for steps in rec.values() for a in steps]
    if want_fisher:
        acts.append(logits)  # the decoder is a linear op of the model too
    grads = torch.autograd.grad(loss, [*theta, *acts], create_graph=hvp, allow_unused=True)
    g_theta = [torch.zeros_like(t) if g is None else g for t, g in zip(theta, grads[: len(theta)])]
    fisher = None
    if want_fisher:
        a_grads = grads[len(theta) :]
        fisher, k = [], 0
        for i, rec in enumerate(linear_outs):
            for node, steps in rec.items():
                a = torch.stack([s.detach() for s in steps], dim=1)  # [batch, seq, hidden]
                g = torch.stack([torch.zeros_like(s) if gg is None else gg.detach()
                                 for s, gg in zip(steps, a_grads[k : k + len(steps)])], dim=1)
                k += len(steps)
                fisher.append((f"layers.{i}.{node}", fisher_terms(a, g, channel_dim=2)))
        g_logits = a_grads[k]
        fisher.append(("decoder", fisher_terms(logits.transpose(0, 1), g_logits.detach().transpose(0, 1), 2)))
    hg = hessian_grad(theta, g_theta) if hvp else None
    return LossOutputs(
        float(loss.detach()), names, [t.detach() for t in theta], [g.detach() for g in g_theta], hg, fisher,
        codes.kernel if codes is not None else None,
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
    codes = NaswotKernel()
    with torch.no_grad():
        p = rnn_params(model, lambda t: t.detach())
        run_rnn(model, p, F.embedding(tokens, p.embedding), codes=codes)
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
    p = rnn_params(model, lambda t: t.detach().to(torch.float64).abs().requires_grad_(True))
    _, theta = p.proxy_weights()
    ones = torch.ones(tokens.shape[0], 1, model.emsize, dtype=torch.float64, device=tokens.device)
    return synflow_log_score(F.linear(run_rnn(model, p, ones), p.embedding, p.decoder_bias), theta)


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
        p = rnn_params(model, lambda t: t.detach())
        both = run_rnn(model, p, torch.cat([x, x + ZEN_GAMMA * eps], dim=1))  # samples never interact
    f0, f1 = both.double().chunk(2, dim=1)
    delta = (f0 - f1).abs().sum(dim=(0, 2)).mean()
    return ZenOutputs(log_positive(delta, "zen", "f(x) = f(x + γε) exactly (Δ = 0, log undefined)"), 0.0)


register_proxies("rnn")
