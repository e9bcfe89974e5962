"""Passes of the established zero-cost proxies, for both search spaces (METRICS.md "Beyond the paper").

The proxies (:mod:`tfnas.metrics.proxies`) are adapted to token inputs: the
input "x" of a proxy is the *embedding output* (RNN: the embedding lookup
[seq, batch, emsize]; BERT: :meth:`FlexiBertModel.embed`, after the E→H
projection, [B, S, H]); gradients with respect to the input are taken there.
Every pass leaves the model as it found it: gradients are taken with
:func:`torch.autograd.grad` (no ``.grad`` is written), random draws come from
private :class:`torch.Generator` objects seeded with ``ctx.seed`` (the global
RNGs are not touched), and SynFlow's absolute-valued weights live in copies.

Passes (same names in both spaces; ``served_by`` lets one run serve several):

- ``proxy_loss``: forward with the language-model loss, one backward; keeps
  ∂L/∂θ of the proxy weights θ, ∂L/∂x, and (when ``fisher`` is requested) the
  Fisher terms of every linear op. Served by ``proxy_loss_hvp``.
- ``proxy_loss_hvp``: the same, with the backward built with
  ``create_graph=True``, plus GraSP's Hessian-gradient product
  H·g = ∂(Σ g_detached ⊙ ∂L/∂θ)/∂θ (Wang et al. 2020). One forward, one
  backward and one double-backward serve grad_norm, snip, fisher and grasp.
- ``proxy_codes``: NASWOT's kernel K (Mellor et al. 2021 v2) of the binary
  codes of the activation units on the clean scoring batch. RNN: served by
  the loss passes (their forward is the clean batch); BERT: its own no-grad
  forward (the loss forward sees masked tokens).
- ``proxy_synflow``: SynFlow (Tanaka et al. 2020) on an absolute-valued
  float64 copy of the weights with an all-ones embedding-output input.
- ``proxy_zen``: Zen-score's two no-grad forwards on Gaussian inputs (Lin et al. 2021).

Losses. RNN: mean next-token cross-entropy over the batch (``y`` of the
``(x, y)`` batch) through the LM's tied decoder. BERT: masked-LM loss of a
freshly initialised ELECTRA generator head (Clark et al. 2020) on the encoder
output: dense H→E, GELU, LayerNorm(E, eps = the config's), then the decoder
tied to the word embeddings [V, E] plus an output bias. Head weights
N(0, ``initializer_range``), biases 0, LayerNorm weight 1, drawn from a
generator seeded with ``ctx.seed``; it lives only inside the pass. Masking:
per sequence, ``max(1, round(0.15 n))`` of its n eligible tokens (real tokens,
``attention_mask`` = 1, that are not special tokens), chosen uniformly without
replacement by a second generator seeded with ``ctx.seed``, all replaced by
[MASK] (no 80/10/10 or 85/15 split); the loss is the mean cross-entropy of
the original tokens at the masked positions. Options: ``mask_token_id``
(default 103, BERT-uncased [MASK]), ``special_token_ids`` (default
0, 100, 101, 102, 103: [PAD] [UNK] [CLS] [SEP] [MASK]), ``mask_prob`` (0.15).

Proxy weights θ (the parameter set the proxies sum over):

- RNN: every weight matrix W_j of every linear node (hidden × size(in_j), one
  per input j, all layers) and the embedding matrix E (tied with the
  decoder, counted once). Biases are not weights here.
- BERT: the weight of every ``nn.Linear``, ``nn.Conv1d`` (DSC's depthwise and
  pointwise key convolutions) and ``nn.Embedding`` (word, position, token
  type) of the encoder; not biases, LayerNorm parameters or the temporary head.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tfnas.engine import ScoringContext, register_pass
from tfnas.metrics.registry import UndefinedScore
from tfnas.models.awd_lm import AWDLanguageModel
from tfnas.models.rnn_cell import RecurrentLayer, combine_inputs

#: BERT-uncased ids of [MASK] and of the tokens never masked ([PAD] [UNK] [CLS] [SEP] [MASK]).
MASK_TOKEN_ID = 103
SPECIAL_TOKEN_IDS = (0, 100, 101, 102, 103)
#: Fraction of eligible tokens masked per sequence (ELECTRA's mask_prob).
MASK_PROB = 0.15
#: Zen-score's perturbation amplitude (Lin et al. 2021, "mixup_gamma").
ZEN_GAMMA = 1e-2

_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "activation_tanh": torch.tanh,
    "activation_sigm": torch.sigmoid,
    "activation_leaky_relu": lambda t: F.leaky_relu(t, 0.01),
}


# --------------------------------------------------------------------------- outputs


@dataclass
class LossOutputs:
    """Outputs of ``proxy_loss`` / ``proxy_loss_hvp`` (both spaces).

    Attributes:
        loss: the loss value L (nats per predicted token).
        names: name of each proxy weight θ_p.
        weights: θ_p (detached; the model's own storage, or views of it).
        grads: ∂L/∂θ_p, same shapes.
        hvp: (H g)_p, GraSP's Hessian-gradient product; None for ``proxy_loss``.
        fisher: per linear op, the per-unit Fisher terms
            ``0.5 · mean_n (Σ_pos a_{n,pos,k} ∂L/∂a_{n,pos,k})²`` [units],
            float64; None unless ``fisher`` was requested.
        input_grad: ∂L/∂x at the embedding output (RNN [seq, batch, emsize];
            BERT [B, S, H]).
        naswot_kernel: the NASWOT kernel K [batch, batch] float64 of the clean
            forward (RNN, when ``naswot`` was requested); else None.
    """

    loss: float
    names: list[str]
    weights: list[Tensor]
    grads: list[Tensor]
    hvp: list[Tensor] | None
    fisher: list[tuple[str, Tensor]] | None
    input_grad: Tensor
    naswot_kernel: Tensor | None = None


@dataclass
class CodesOutputs:
    """Outputs of ``proxy_codes``.

    Attributes:
        naswot_kernel: K [batch, batch] float64, K_ij = number of code bits on
            which samples i and j agree (Mellor et al. 2021 v2).
        bits: total number of code bits per sample.
    """

    naswot_kernel: Tensor
    bits: int


@dataclass
class SynflowOutputs:
    """Outputs of ``proxy_synflow``.

    Attributes:
        log_synflow: ln Σ_θ |θ ⊙ ∂R/∂θ| (natural log), computed as a log-sum-exp of
            per-element log terms so that it stays finite where the sum itself
            would overflow.
        terms: number of non-zero terms summed.
    """

    log_synflow: float
    terms: int


@dataclass
class ZenOutputs:
    """Outputs of ``proxy_zen``.

    Attributes:
        log_delta: ln of mean over samples of Σ |f(x) − f(x + γ ε)|.
        log_norm_scale: Σ over normalisation layers of ln √(mean input variance)
            (0 for the RNN, which has none).
    """

    log_delta: float
    log_norm_scale: float


class KernelAccumulator:
    """Accumulates NASWOT's K = Σ c cᵀ + (1−c)(1−c)ᵀ over calls of activation units.

    Each call adds code bits c [batch, n] (bool); an optional validity mask
    [batch, n] (bool) drops bits that are padding: for those, only pairs where
    both bits are valid count. 0/1 products summed over n < 2^24 terms are
    exact in float32; the running total is float64.
    """

    def __init__(self) -> None:
        self.kernel: Tensor | None = None
        self.bits = 0

    def add(self, codes: Tensor, valid: Tensor | None = None) -> None:
        """Add one call's codes ``codes`` [batch, n] (bool) and its validity mask (or None)."""
        c = codes.reshape(codes.shape[0], -1)
        n = c.shape[1]
        dtype = torch.float32 if n < 2**24 else torch.float64
        on = c.to(dtype)
        off = 1.0 - on
        if valid is not None:
            v = valid.reshape(c.shape).to(dtype)
            on, off = on * v, off * v
        k = (on @ on.t()).double() + (off @ off.t()).double()
        self.kernel = k if self.kernel is None else self.kernel + k
        self.bits += n


# --------------------------------------------------------------------------- helpers


def _log_sum_abs_products(pairs: list[tuple[Tensor, Tensor]], log_scale: float = 0.0) -> SynflowOutputs:
    """ln Σ |θ ⊙ g| over all pairs via log-sum-exp of ln|θ| + ln|g| (zero terms skipped), plus ``log_scale``.

    Raises:
        UndefinedScore: a gradient is not finite (float64 overflow), or every term is zero.
    """
    logs = []
    for w, g in pairs:
        if not torch.isfinite(g).all():
            raise UndefinedScore("synflow: float64 overflow in the backward (non-finite ∂R/∂θ)")
        w, g = w.detach().double().abs().reshape(-1), g.detach().double().abs().reshape(-1)
        keep = (w > 0) & (g > 0)
        logs.append(torch.log(w[keep]) + torch.log(g[keep]))
    flat = torch.cat(logs) if logs else torch.zeros(0, dtype=torch.float64)
    if flat.numel() == 0:
        raise UndefinedScore("synflow: every θ ⊙ ∂R/∂θ is zero (log undefined)")
    return SynflowOutputs(float(torch.logsumexp(flat, dim=0)) + log_scale, int(flat.numel()))


def _synflow_log_score(out: Tensor, theta: list[Tensor]) -> float:
    """ln Σ_θ |θ ⊙ ∂(Σ out)/∂θ| for the float64 leaves ``theta`` that ``out`` was computed from.

    The backward seed is 2^-k instead of 1 (:func:`_pow2_scale`), an exact
    rescaling that keeps the gradients finite; k ln 2 is added back.
    """
    k = _pow2_scale(out)
    grads = torch.autograd.grad(out, theta, grad_outputs=torch.full_like(out, 2.0**-k), allow_unused=True)
    pairs = [(t, torch.zeros_like(t) if g is None else g) for t, g in zip(theta, grads)]
    return _log_sum_abs_products(pairs, k * math.log(2.0))


def _pow2_scale(out: Tensor) -> int:
    """k such that 2^-k · max|out| ≤ 1 (k ≥ 0), for an exact rescaling of the backward seed.

    Raises:
        UndefinedScore: ``out`` is not finite (float64 overflow in the forward).
    """
    if not torch.isfinite(out).all():
        raise UndefinedScore(
            "synflow: float64 overflow in the forward (the all-ones signal through |θ| exceeds 1.8e308)"
        )
    peak = float(out.detach().abs().max()) if out.numel() else 0.0
    return max(0, math.frexp(peak)[1]) if peak > 0 else 0


def _fisher_terms(act: Tensor, grad: Tensor, channel_dim: int) -> Tensor:
    """Per-unit Fisher 0.5 · mean_n (Σ_pos a ∂a)² (Turner et al. 2020, as in Abdelfattah et al. 2021).

    Args:
        act: a linear op's output with the sample axis first: [n, ..., units, ...].
        grad: ∂L/∂act, same shape.
        channel_dim: the axis of the units; every axis but 0 and it is a position axis.

    Returns:
        float64 [units].
    """
    prod = act.detach().double() * grad.detach().double()
    prod = prod.movedim(channel_dim, -1).reshape(prod.shape[0], -1, prod.shape[channel_dim])
    return 0.5 * prod.sum(dim=1).square().mean(dim=0)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(int(seed))


# --------------------------------------------------------------------------- RNN


def _lm(ctx: ScoringContext) -> AWDLanguageModel:
    if not isinstance(ctx.model, AWDLanguageModel):
        raise TypeError(f"RNN proxy passes need an AWDLanguageModel, got {type(ctx.model).__name__}")
    return ctx.model


def _rnn_batch(ctx: ScoringContext) -> tuple[Tensor, Tensor | None]:
    device = ctx.model.encoder.weight.device
    if isinstance(ctx.batch, (tuple, list)):
        x = ctx.batch[0].to(device)
        y = ctx.batch[1].to(device) if len(ctx.batch) > 1 else None
        return x, y
    return ctx.batch.to(device), None


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
    codes: KernelAccumulator | None,
) -> Tensor:
    """One recurrent layer (SPACES.md §1 cell semantics) with explicit tensors: [seq, B, in] -> [seq, B, hidden].

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
    codes: KernelAccumulator | None = None,
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
    model = _lm(ctx)
    tokens, targets = _rnn_batch(ctx)
    if targets is None:
        raise ValueError("RNN loss proxies need the batch's next-token targets: batch must be (x, y)")
    if targets.shape != tokens.shape:
        raise ValueError(f"targets {tuple(targets.shape)} do not match inputs {tuple(tokens.shape)}")
    want_fisher = "fisher" in ctx.requested
    codes = KernelAccumulator() if "naswot" in ctx.requested else None
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
    grads = torch.autograd.grad(loss, [*theta, emb, *acts], create_graph=hvp, allow_unused=True)
    g_theta = [torch.zeros_like(t) if g is None else g for t, g in zip(theta, grads[: len(theta)])]
    input_grad = grads[len(theta)].detach()
    fisher = None
    if want_fisher:
        a_grads = grads[len(theta) + 1 :]
        fisher, k = [], 0
        for i, rec in enumerate(linear_outs):
            for node, steps in rec.items():
                a = torch.stack([s.detach() for s in steps], dim=1)  # [batch, seq, hidden]
                g = torch.stack([torch.zeros_like(s) if gg is None else gg.detach()
                                 for s, gg in zip(steps, a_grads[k : k + len(steps)])], dim=1)
                k += len(steps)
                fisher.append((f"layers.{i}.{node}", _fisher_terms(a, g, channel_dim=2)))
        g_logits = a_grads[k]
        fisher.append(("decoder", _fisher_terms(logits.transpose(0, 1), g_logits.detach().transpose(0, 1), 2)))
    hg = _hessian_grad(theta, g_theta) if hvp else None
    return LossOutputs(
        float(loss.detach()), names, [t.detach() for t in theta], [g.detach() for g in g_theta], hg, fisher, input_grad,
        codes.kernel if codes is not None else None,
    )


def _hessian_grad(theta: list[Tensor], grads: list[Tensor]) -> list[Tensor]:
    """GraSP's H g: ∂(Σ_p g_p,detached ⊙ ∂L/∂θ_p)/∂θ (Wang et al. 2020), from a create_graph gradient."""
    z = sum((g.detach() * g).sum() for g in grads if g.requires_grad)
    if not isinstance(z, Tensor) or not z.requires_grad:
        return [torch.zeros_like(t) for t in theta]
    hg = torch.autograd.grad(z, theta, allow_unused=True)
    return [torch.zeros_like(t) if h is None else h.detach() for t, h in zip(theta, hg)]


@register_pass("rnn", "proxy_loss", served_by=("proxy_loss_hvp",))
def rnn_loss_pass(ctx: ScoringContext) -> LossOutputs:
    """Next-token loss forward and one backward (RNN); see the module docstring.

    L = mean cross-entropy of the tied decoder's logits [seq, batch, ntoken]
    against the batch's targets ``y`` [seq, batch]; θ = every W_j and E.

    Raises:
        TypeError: the model is not an :class:`AWDLanguageModel`.
        ValueError: the batch has no targets, or their shape differs from the inputs'.
    """
    return _rnn_loss(ctx, hvp=False)


@register_pass("rnn", "proxy_loss_hvp")
def rnn_loss_hvp_pass(ctx: ScoringContext) -> LossOutputs:
    """``proxy_loss`` with a create_graph backward and GraSP's Hessian-gradient product (RNN).

    Raises:
        TypeError, ValueError: as :func:`rnn_loss_pass`.
    """
    return _rnn_loss(ctx, hvp=True)


@register_pass("rnn", "proxy_codes", served_by=("proxy_loss_hvp", "proxy_loss"))
def rnn_codes_pass(ctx: ScoringContext) -> CodesOutputs:
    """NASWOT codes 1[z > 0] of every activation node's input, all steps and layers, clean batch (RNN)."""
    model = _lm(ctx)
    tokens, _ = _rnn_batch(ctx)
    codes = KernelAccumulator()
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
    model = _lm(ctx)
    tokens, _ = _rnn_batch(ctx)
    p = rnn_params(model, lambda t: t.detach().to(torch.float64).abs().requires_grad_(True))
    _, theta = p.proxy_weights()
    ones = torch.ones(tokens.shape[0], 1, model.emsize, dtype=torch.float64, device=tokens.device)
    return _synflow_log_score(F.linear(run_rnn(model, p, ones), p.embedding, p.decoder_bias), theta)


@register_pass("rnn", "proxy_zen")
def rnn_zen_pass(ctx: ScoringContext) -> ZenOutputs:
    """Zen-score's forwards (Lin et al. 2021) on the RNN: x, ε ~ N(0, 1) [seq, batch, emsize].

    f = the last layer's output (the pre-decoder feature map, as Zen takes the
    pre-pooling one); Δ = mean over samples of Σ_{t,d} |f(x) − f(x + 0.01 ε)|.
    No normalisation layers: the scale term is 0.
    """
    model = _lm(ctx)
    tokens, _ = _rnn_batch(ctx)
    g = _generator(ctx.seed)
    shape = (tokens.shape[0], tokens.shape[1], model.emsize)
    x = torch.randn(shape, generator=g).to(tokens.device)
    eps = torch.randn(shape, generator=g).to(tokens.device)
    with torch.no_grad():
        p = rnn_params(model, lambda t: t.detach())
        both = run_rnn(model, p, torch.cat([x, x + ZEN_GAMMA * eps], dim=1))  # samples never interact
    f0, f1 = both.double().chunk(2, dim=1)
    delta = (f0 - f1).abs().sum(dim=(0, 2)).mean()
    return ZenOutputs(_log_positive(delta, "zen", "f(x) = f(x + γε) exactly (Δ = 0, log undefined)"), 0.0)


def _log_positive(v: Tensor, what: str, zero_reason: str) -> float:
    """ln v for a positive finite scalar.

    Raises:
        UndefinedScore: v is not finite ("<what>: non-finite value (overflow)") or v ≤ 0 (``zero_reason``).
    """
    v = float(v)
    if not math.isfinite(v):
        raise UndefinedScore(f"{what}: non-finite value (overflow)")
    if v <= 0:
        raise UndefinedScore(f"{what}: {zero_reason}")
    return math.log(v)


# --------------------------------------------------------------------------- BERT


def _bert_layers(model: nn.Module) -> list[nn.Module]:
    try:
        return list(model.encoder.layer)
    except AttributeError:
        raise TypeError(f"BERT proxy passes need a FlexiBertModel, got {type(model).__name__}") from None


def bert_proxy_weights(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """(name, weight) of every ``nn.Linear``, ``nn.Conv1d`` and ``nn.Embedding`` of the model, in module order."""
    _bert_layers(model)
    return [
        (f"{n}.weight", m.weight)
        for n, m in model.named_modules()
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Embedding))
    ]


def _bert_inputs(ctx: ScoringContext) -> tuple[Tensor, Tensor | None, Tensor | None]:
    model = ctx.model
    device = next(model.parameters()).device
    batch = ctx.batch
    if not isinstance(batch, dict) or "input_ids" not in batch:
        raise ValueError("BERT proxies need a batch dict with 'input_ids'")
    ids = batch["input_ids"].to(device)
    attn = batch.get("attention_mask")
    tt = batch.get("token_type_ids")
    return ids, None if attn is None else attn.to(device), None if tt is None else tt.to(device)


def mask_tokens(
    ids: Tensor,
    attention_mask: Tensor | None,
    seed: int,
    mask_token_id: int = MASK_TOKEN_ID,
    special_token_ids: tuple[int, ...] = SPECIAL_TOKEN_IDS,
    mask_prob: float = MASK_PROB,
) -> tuple[Tensor, Tensor]:
    """Choose the masked-LM positions and mask them (see the module docstring).

    Args:
        ids: [B, S] token ids.
        attention_mask: [B, S], 1 for real tokens, or None (all real).
        seed: seeds the private generator that picks the positions.
        mask_token_id: the [MASK] id written at the chosen positions.
        special_token_ids: ids never chosen.
        mask_prob: fraction of each sequence's eligible tokens masked.

    Returns:
        (masked ids [B, S], chosen positions [B, S] bool).

    Raises:
        UndefinedScore: no sequence has an eligible token.
    """
    eligible = ~torch.isin(ids, torch.tensor(list(special_token_ids), device=ids.device))
    if attention_mask is not None:
        eligible &= attention_mask.bool()
    eligible = eligible.cpu()
    scores = torch.rand(ids.shape, generator=_generator(seed))
    scores[~eligible] = -1.0
    order = scores.argsort(dim=1, descending=True)
    n = eligible.sum(dim=1)
    k = torch.where(n > 0, torch.clamp((n.double() * mask_prob).round().long(), min=1), torch.zeros_like(n))
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(ids.shape[1]).expand_as(order).contiguous())
    chosen = (rank < k[:, None]) & eligible
    if not chosen.any():
        raise UndefinedScore("masked-LM loss: no maskable (non-special, non-padding) token in the batch")
    chosen = chosen.to(ids.device)
    return torch.where(chosen, torch.full_like(ids, mask_token_id), ids), chosen


@dataclass
class MLMHead:
    """A freshly initialised ELECTRA generator head (Clark et al. 2020): dense H→E, GELU, LayerNorm(E), tied decoder.

    Attributes:
        dense_w: [E, H]; dense_b: [E]; ln_w, ln_b: [E]; out_b: [V]; eps: LayerNorm epsilon.
    """

    dense_w: Tensor
    dense_b: Tensor
    ln_w: Tensor
    ln_b: Tensor
    out_b: Tensor
    eps: float

    @classmethod
    def create(cls, hidden: int, embedding: int, vocab: int, std: float, eps: float, seed: int, device) -> "MLMHead":
        """Dense weight N(0, std) from a generator seeded with ``seed``; biases 0; LayerNorm weight 1."""
        w = torch.randn(embedding, hidden, generator=_generator(seed)) * std
        z = lambda n: torch.zeros(n, device=device)  # noqa: E731
        return cls(w.to(device), z(embedding), torch.ones(embedding, device=device), z(embedding), z(vocab), eps)

    def logits(self, hidden: Tensor, word_embeddings: Tensor) -> Tensor:
        """[N, H] encoder outputs -> [N, V] logits with the decoder tied to ``word_embeddings`` [V, E]."""
        h = F.gelu(F.linear(hidden, self.dense_w, self.dense_b))
        h = F.layer_norm(h, (h.shape[-1],), self.ln_w, self.ln_b, self.eps)
        return F.linear(h, word_embeddings, self.out_b)


def _bert_loss(ctx: ScoringContext, hvp: bool) -> LossOutputs:
    model = ctx.model
    _bert_layers(model)
    ids, attn, tt = _bert_inputs(ctx)
    cfg = model.config
    opts = ctx.options
    mask_id = int(opts.get("mask_token_id", MASK_TOKEN_ID))
    if not 0 <= mask_id < cfg.vocab_size:
        raise ValueError(f"mask_token_id={mask_id} is outside the vocabulary (size {cfg.vocab_size})")
    masked, chosen = mask_tokens(
        ids, attn, ctx.seed, mask_id, tuple(opts.get("special_token_ids", SPECIAL_TOKEN_IDS)),
        float(opts.get("mask_prob", MASK_PROB)),
    )
    device = ids.device
    head = MLMHead.create(
        cfg.hidden_size, cfg.embedding_size, cfg.vocab_size, cfg.initializer_range, cfg.layer_norm_eps, ctx.seed, device
    )
    named = bert_proxy_weights(model)
    theta = [w for _, w in named]
    want_fisher = "fisher" in ctx.requested
    acts: list[tuple[str, Tensor, int]] = []
    handles = []
    if want_fisher:
        for name, mod in model.named_modules():
            if isinstance(mod, (nn.Linear, nn.Conv1d)):
                ch = 2 if isinstance(mod, nn.Linear) else 1  # Linear [B, S, C]; Conv1d [B, C, S]

                def hook(m, i, o, name=name, ch=ch):
                    acts.append((name, o, ch if o.dim() == 3 else o.dim() - 1))

                handles.append(mod.register_forward_hook(hook))
    try:
        x = model.embed(masked, tt)
        out = model.encode(x, None if ctx.paper_compat else attn).last_hidden_state
    finally:
        for h in handles:
            h.remove()
    logits = head.logits(out[chosen], model.embeddings.word_embeddings.weight)
    loss = F.cross_entropy(logits, ids[chosen])
    act_tensors = [a for _, a, _ in acts]
    grads = torch.autograd.grad(loss, [*theta, x, *act_tensors], create_graph=hvp, allow_unused=True)
    g_theta = [torch.zeros_like(t) if g is None else g for t, g in zip(theta, grads[: len(theta)])]
    input_grad = grads[len(theta)].detach()
    fisher = None
    if want_fisher:
        fisher = []
        for (name, a, ch), g in zip(acts, grads[len(theta) + 1 :]):
            g = torch.zeros_like(a) if g is None else g.detach()
            fisher.append((name, _fisher_terms(a, g, ch)))
    hg = _hessian_grad(theta, g_theta) if hvp else None
    names = [n for n, _ in named]
    return LossOutputs(
        float(loss.detach()), names, [t.detach() for t in theta], [g.detach() for g in g_theta], hg, fisher, input_grad
    )


@register_pass("bert", "proxy_loss", served_by=("proxy_loss_hvp",))
def bert_loss_pass(ctx: ScoringContext) -> LossOutputs:
    """Masked-LM loss forward (fresh ELECTRA generator head) and one backward (BERT).

    x = ``model.embed(masked ids)`` [B, S, H]; the encoder runs with the
    attention mask (none in ``paper_compat``); L = mean cross-entropy of the
    head's logits [n_masked, V] against the original tokens; θ = every
    Linear / Conv1d / Embedding weight (the head excluded).

    Raises:
        TypeError: not a FlexiBERT model.
        ValueError: no ``input_ids``, or ``mask_token_id`` outside the vocabulary.
        UndefinedScore: no maskable token in the batch.
    """
    return _bert_loss(ctx, hvp=False)


@register_pass("bert", "proxy_loss_hvp")
def bert_loss_hvp_pass(ctx: ScoringContext) -> LossOutputs:
    """``proxy_loss`` with a create_graph backward and GraSP's Hessian-gradient product (BERT).

    Raises:
        TypeError, ValueError, UndefinedScore: as :func:`bert_loss_pass`.
    """
    return _bert_loss(ctx, hvp=True)


@register_pass("bert", "proxy_codes")
def bert_codes_pass(ctx: ScoringContext) -> CodesOutputs:
    """NASWOT codes of every feed-forward GELU call on the clean batch (BERT).

    Samples are the B sequences; a sequence's code is 1[z > 0] (⇔ GELU(z) > 0)
    of every unit of every GELU call at every real token position, so the
    code has Σ_calls S·I bits; padding positions count for neither sample.
    """
    model = ctx.model
    layers = _bert_layers(model)
    ids, attn, tt = _bert_inputs(ctx)
    codes = KernelAccumulator()

    def hook(m, i, o):
        valid = None if attn is None else attn.bool()[:, :, None].expand_as(o)
        codes.add((o > 0).reshape(o.shape[0], -1), None if valid is None else valid.reshape(o.shape[0], -1))

    handles = [layer.feed_forward.act.register_forward_hook(hook) for layer in layers]
    try:
        with torch.no_grad():
            model(input_ids=ids, attention_mask=None if ctx.paper_compat else attn, token_type_ids=tt)
    finally:
        for h in handles:
            h.remove()
    if codes.kernel is None:
        raise UndefinedScore("naswot: no feed-forward activation was called")
    return CodesOutputs(codes.kernel, codes.bits)


class _Affine(nn.Module):
    """LayerNorm without the normalisation: x ⊙ w + b (SynFlow's copy; see :func:`bert_synflow_pass`)."""

    def __init__(self, weight: Tensor, bias: Tensor):
        super().__init__()
        self.weight, self.bias = nn.Parameter(weight), nn.Parameter(bias)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.weight + self.bias


def _synflow_copy(model: nn.Module) -> nn.Module:
    """A float64 copy with |θ| for every parameter and each LayerNorm replaced by its affine part."""
    twin = copy.deepcopy(model).to(torch.float64).eval()
    with torch.no_grad():
        for p in twin.parameters():
            p.requires_grad_(False).abs_()
    for parent in list(twin.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, nn.LayerNorm):
                setattr(parent, child_name, _Affine(child.weight.detach().clone(), child.bias.detach().clone()))
    return twin


@register_pass("bert", "proxy_synflow")
def bert_synflow_pass(ctx: ScoringContext) -> SynflowOutputs:
    """SynFlow (Tanaka et al. 2020), data-free, on the encoder.

    θ → |θ| in float64 on a copy; input x = ones [1, S, H] at the embedding
    output (S = the scoring batch's length), no attention mask; R = Σ of
    ``last_hidden_state``. LayerNorm on a constant input gives 0 (and would
    zero every score), so, as Abdelfattah et al. 2021 run SynFlow without
    batch norm, each LayerNorm is replaced by its affine part |γ| x + |β|
    (the identity at initialisation). Score ln Σ_θ |θ ⊙ ∂R/∂θ| over the proxy
    weights; the embedding tables and ``embeddings_project`` lie upstream of x
    and add nothing. The backward seed is rescaled by an exact power of 2.
    """
    _bert_layers(ctx.model)
    ids, _, _ = _bert_inputs(ctx)
    twin = _synflow_copy(ctx.model)
    theta = [w.requires_grad_(True) for _, w in bert_proxy_weights(twin)]
    ones = torch.ones(1, ids.shape[1], twin.config.hidden_size, dtype=torch.float64, device=ids.device)
    return _synflow_log_score(twin.encode(ones, None).last_hidden_state, theta)


@register_pass("bert", "proxy_zen")
def bert_zen_pass(ctx: ScoringContext) -> ZenOutputs:
    """Zen-score's forwards (Lin et al. 2021) on the encoder: x, ε ~ N(0, 1) [B, S, H] at the embedding output.

    f = ``last_hidden_state`` (no mask: the Gaussian inputs have no padding);
    Δ = mean over samples of Σ_{s,h} |f(x) − f(x + 0.01 ε)|. Zen's batch-norm
    term Σ ln √(mean running variance) becomes, for LayerNorm, Σ over the
    encoder's LayerNorms of ln √(mean over tokens of the variance of the
    LayerNorm's input over features), measured in the forward of f(x).
    """
    model = ctx.model
    _bert_layers(model)
    ids, _, _ = _bert_inputs(ctx)
    dtype = next(model.parameters()).dtype
    g = _generator(ctx.seed)
    shape = (ids.shape[0], ids.shape[1], model.config.hidden_size)
    x = torch.randn(shape, generator=g).to(ids.device, dtype)
    eps = torch.randn(shape, generator=g).to(ids.device, dtype)
    variances: list[Tensor] = []
    recording = [True]

    def pre_hook(m, inputs):
        if recording[0]:
            variances.append(inputs[0].detach().double().var(dim=-1, unbiased=False).mean())

    handles = [m.register_forward_pre_hook(pre_hook) for m in model.encoder.modules() if isinstance(m, nn.LayerNorm)]
    try:
        with torch.no_grad():
            f0 = model.encode(x, None).last_hidden_state.double()
            recording[0] = False
            f1 = model.encode(x + ZEN_GAMMA * eps, None).last_hidden_state.double()
    finally:
        for h in handles:
            h.remove()
    delta = (f0 - f1).abs().sum(dim=(1, 2)).mean()
    log_scale = 0.0
    for v in variances:
        log_scale += 0.5 * _log_positive(v, "zen", "a LayerNorm input has zero variance (log undefined)")
    return ZenOutputs(_log_positive(delta, "zen", "f(x) = f(x + γε) exactly (Δ = 0, log undefined)"), log_scale)
