"""The established zero-cost proxies, shared by every model family (docs/METRICS.md "Beyond the paper").

A family offers the proxies by registering five passes under the names below
and calling :func:`register_proxies` with its name (see
:mod:`tfnas.scoring.rnn.proxies`, :mod:`tfnas.scoring.bert.proxies`). This
module holds what is the same in every family: what each pass returns, each
proxy as a pure function of those outputs, and the arithmetic the passes
share (SynFlow's log-space sum, the Fisher terms, GraSP's Hessian-gradient
product; for the transformer families the loss pass's backward and Zen's
LayerNorm forwards).

Adaptation to token inputs: the input x of a proxy is the embedding output;
the loss is the family's language-model loss (RNN: next-token cross-entropy
through the tied decoder; BERT: masked-LM loss of a fresh, seeded ELECTRA
generator head with 15 % of the tokens masked); θ, the proxy weights, are the
family's weight matrices and embeddings, never biases, normalisation
parameters or temporary heads. Sums are taken in float64. Every pass leaves
the model as it found it: gradients are taken with :func:`torch.autograd.grad`
(no ``.grad`` is written), random draws come from private
:class:`torch.Generator` objects seeded with ``ctx.seed`` (the global RNGs are
not touched), and SynFlow's absolute-valued weights live in copies.

Passes (``served_by`` lets one run serve several):

- ``proxy_loss``: forward with the loss, one backward; keeps ∂L/∂θ and, when
  asked (capture ``"fisher"``), the Fisher terms of every linear op.
  Served by ``proxy_loss_hvp``.
- ``proxy_loss_hvp``: the same, plus GraSP's θᵀ H g (Wang et al. 2020),
  taken as gᵀ (H θ) (H is symmetric): for BERT and GPT a backward built with
  ``create_graph=True`` and a double backward giving H θ, chunk by chunk of
  the batch (:class:`LossBackward`); for the RNN family by hand, its backward
  through time with H θ by forward-over-reverse in the same pass
  (:mod:`tfnas.scoring.rnn.proxies`). One pass serves grad_norm, snip,
  fisher and grasp.
- ``proxy_codes``: NASWOT's kernel K (Mellor et al. 2021 v2) of the binary
  codes of the activation units on the clean scoring batch.
- ``proxy_synflow``: SynFlow (Tanaka et al. 2020) on an absolute-valued
  float64 copy of the weights with an all-ones embedding-output input.
- ``proxy_zen``: Zen-score's two no-grad forwards on Gaussian inputs (Lin et al. 2021).

| proxy | value | source |
|---|---|---|
| ``grad_norm`` | Σ_p ‖∂L/∂θ_p‖_F | Abdelfattah et al. 2021 |
| ``snip`` | Σ |θ ⊙ ∂L/∂θ| | Lee et al. 2019 |
| ``grasp`` | −Σ θ ⊙ (H ∂L/∂θ) | Wang et al. 2020 |
| ``fisher`` | Σ_units ½ mean_n (Σ_pos a ∂L/∂a)² | Theis et al. 2018, Turner et al. 2020 |
| ``synflow`` | ln Σ |θ ⊙ ∂R/∂θ| (natural log) | Tanaka et al. 2020 |
| ``naswot`` | ln|det K| | Mellor et al. 2021 v2 |
| ``zen`` | ln Δ + Σ ln σ_norm | Lin et al. 2021 |
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from tfnas.scoring.api import ScoringContext, UndefinedScore, register
from tfnas.scoring.scores import logdet

#: The proxies, in the order of conf/metrics/proxies.yaml.
PROXIES = ("grad_norm", "snip", "grasp", "fisher", "synflow", "naswot", "zen")
#: Zen-score's perturbation amplitude (Lin et al. 2021, "mixup_gamma").
ZEN_GAMMA = 1e-2


# --------------------------------------------------------------------------- pass outputs


@dataclass
class LossOutputs:
    """Outputs of ``proxy_loss`` / ``proxy_loss_hvp``.

    Attributes:
        loss: the loss value L (nats per predicted token).
        names: name of each proxy weight θ_p.
        weights: θ_p (detached; the model's own storage, or views of it).
        grads: ∂L/∂θ_p, same shapes.
        fisher: per linear op, the per-unit Fisher terms
            ``0.5 · mean_n (Σ_pos a_{n,pos,k} ∂L/∂a_{n,pos,k})²`` [units],
            float64; None unless the capture ``"fisher"`` was asked for.
        naswot_kernel: the NASWOT kernel K [batch, batch] float64 of the clean
            forward, when the pass serves ``proxy_codes`` (the RNN's loss
            forward sees the clean batch); else None.
        theta_hg: GraSP's θᵀ H g, float64, computed as gᵀ (H θ) (H is
            symmetric); None for ``proxy_loss``.
    """

    loss: float
    names: list[str]
    weights: list[Tensor]
    grads: list[Tensor]
    fisher: list[tuple[str, Tensor]] | None
    naswot_kernel: Tensor | None = None
    theta_hg: float | None = None


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


# --------------------------------------------------------------------------- shared pass arithmetic


def log_sum_abs_products(pairs: list[tuple[Tensor, Tensor]], log_scale: float = 0.0) -> SynflowOutputs:
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


def synflow_log_score(out: Tensor, theta: list[Tensor]) -> SynflowOutputs:
    """ln Σ_θ |θ ⊙ ∂(Σ out)/∂θ| for the float64 leaves ``theta`` that ``out`` was computed from.

    The backward seed is 2^-k instead of 1 (:func:`_pow2_scale`), an exact
    rescaling that keeps the gradients finite; k ln 2 is added back.
    """
    k = _pow2_scale(out)
    grads = torch.autograd.grad(out, theta, grad_outputs=torch.full_like(out, 2.0**-k), allow_unused=True)
    pairs = [(t, torch.zeros_like(t) if g is None else g) for t, g in zip(theta, grads)]
    return log_sum_abs_products(pairs, k * math.log(2.0))


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


class _Affine(nn.Module):
    """LayerNorm without the normalisation: x ⊙ w + b (SynFlow's copy; see :func:`synflow_copy`)."""

    def __init__(self, weight: Tensor, bias: Tensor):
        super().__init__()
        self.weight, self.bias = nn.Parameter(weight), nn.Parameter(bias)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.weight + self.bias


def synflow_copy(model: nn.Module) -> nn.Module:
    """A float64 eval copy of a transformer with |θ| for every parameter and each LayerNorm replaced by its affine part.

    LayerNorm of SynFlow's constant input gives 0 (and would zero every
    score), so, as Abdelfattah et al. 2021 run SynFlow without batch norm,
    each LayerNorm becomes |γ| x + |β| (the identity at initialisation). The
    parameters do not require grad; the caller marks the ones it scores.
    """
    twin = copy.deepcopy(model).to(torch.float64).eval()
    with torch.no_grad():
        for p in twin.parameters():
            p.requires_grad_(False).abs_()
    for parent in list(twin.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, nn.LayerNorm):
                setattr(parent, child_name, _Affine(child.weight.detach().clone(), child.bias.detach().clone()))
    return twin


def fisher_terms(act: Tensor, grad: Tensor, channel_dim: int) -> Tensor:
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


def seeded_generator(seed: int) -> torch.Generator:
    """A private CPU generator seeded with ``seed`` (the global RNGs stay untouched)."""
    return torch.Generator(device="cpu").manual_seed(int(seed))


def log_positive(v: Tensor, what: str, zero_reason: str) -> float:
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


class LossBackward:
    """The backward of a loss pass whose proxy weights are the model's own tensors (BERT, GPT), in chunks of samples.

    L = Σ_c L_c over chunks of the batch, each L_c the chunk's share of the
    whole batch's loss (its summed token losses over the whole batch's count),
    so that ∂L/∂θ = Σ_c ∂L_c/∂θ. Per chunk, one :func:`torch.autograd.grad` of
    L_c to θ and to the recorded op outputs (built with ``create_graph`` for
    GraSP), then the chunk's graph is freed; a tensor that L_c does not reach
    gets a zero gradient. GraSP: θᵀ H g = gᵀ (H θ) (H is symmetric), and
    H θ = Σ_c ∂(Σ_p θ_p,detached ⊙ ∂L_c/∂θ_p)/∂θ needs no g beforehand, so
    each chunk adds its double backward (Wang et al. 2020 take H g the same
    way, with g as the direction); summed in float64 into ``theta_hg``. The
    Fisher terms, a mean over samples, add each chunk's with weight
    n_chunk / n_samples.

    Args:
        named: (name, θ_p) of every proxy weight.
        samples: samples in the whole batch (the Fisher mean's n).
        fisher: record the Fisher terms (``add`` then takes the op outputs).
        hvp: compute GraSP's θᵀ H g.
    """

    def __init__(self, named: list[tuple[str, Tensor]], samples: int, fisher: bool, hvp: bool):
        self.names = [n for n, _ in named]
        self.theta = [w for _, w in named]
        self.samples, self.hvp = samples, hvp
        self.loss = 0.0
        self.grads = [torch.zeros_like(t) for t in self.theta]
        self.h_theta = [torch.zeros_like(t) for t in self.theta] if hvp else None
        self.fisher: dict[str, Tensor] | None = {} if fisher else None

    def add(self, loss: Tensor, acts: list[tuple[str, Tensor, int]] | None = None, samples: int | None = None) -> None:
        """One chunk: L_c (a scalar) and, for Fisher, (name, output a, channel axis of a) of every linear op.

        ``samples``: the chunk's samples (default: the whole batch, one chunk).
        """
        outs = [a for _, a, _ in acts or []]
        grads = torch.autograd.grad(loss, [*self.theta, *outs], create_graph=self.hvp, allow_unused=True)
        self.loss += float(loss.detach())
        g_theta = grads[: len(self.theta)]
        if self.fisher is not None:
            share = (self.samples if samples is None else samples) / self.samples
            for (name, a, channel_dim), g in zip(acts or [], grads[len(self.theta) :]):
                term = share * fisher_terms(a, torch.zeros_like(a) if g is None else g.detach(), channel_dim)
                self.fisher[name] = term if name not in self.fisher else self.fisher[name] + term
        if self.hvp:
            z = sum((t.detach() * g).sum() for t, g in zip(self.theta, g_theta) if g is not None and g.requires_grad)
            if isinstance(z, Tensor) and z.requires_grad:
                for acc, h in zip(self.h_theta, torch.autograd.grad(z, self.theta, allow_unused=True)):
                    if h is not None:
                        acc.add_(h)
        with torch.no_grad():
            for acc, g in zip(self.grads, g_theta):
                if g is not None:
                    acc.add_(g.detach())

    def outputs(self) -> LossOutputs:
        """:class:`LossOutputs` of the chunks added (``fisher`` None unless asked for)."""
        theta_hg = None
        if self.hvp:
            theta_hg = float(_sum((g.double() * h.double()).sum() for g, h in zip(self.grads, self.h_theta)))
        fisher = None if self.fisher is None else list(self.fisher.items())
        return LossOutputs(self.loss, self.names, [t.detach() for t in self.theta], self.grads, fisher,
                           theta_hg=theta_hg)  # fmt: skip


def layer_norm_zen(
    f: Callable[[Tensor], Tensor], body: nn.Module, shape: tuple[int, ...], dtype: torch.dtype, device, seed: int
) -> ZenOutputs:
    """Zen-score's forwards (Lin et al. 2021) on a LayerNorm network (BERT, GPT): x, ε ~ N(0, 1) of ``shape``.

    x and then ε are drawn on the CPU from a generator seeded with ``seed`` and
    moved to ``device`` and ``dtype``. Δ = mean over samples (axis 0) of the
    sum over positions and features of |f(x) − f(x + 0.01 ε)|, in float64. Zen's
    batch-norm term Σ ln √(mean running variance) becomes, for LayerNorm, the
    sum over every ``nn.LayerNorm`` in ``body`` of ln √(mean over positions of
    the variance of its input over features), measured in the forward of f(x).

    Args:
        f: the network, [B, S, H] -> [B, S, H'] (run without gradients).
        body: the module whose LayerNorms count.
        shape: [B, S, H] of the inputs.
        dtype, device: of the inputs.
        seed: the scoring seed.

    Raises:
        UndefinedScore: Δ = 0, a LayerNorm input with zero variance, or an overflow.
    """
    g = seeded_generator(seed)
    x = torch.randn(shape, generator=g).to(device, dtype)
    eps = torch.randn(shape, generator=g).to(device, dtype)
    variances: list[Tensor] = []
    recording = [True]

    def pre_hook(m, inputs):
        if recording[0]:
            variances.append(inputs[0].detach().double().var(dim=-1, unbiased=False).mean())

    handles = [m.register_forward_pre_hook(pre_hook) for m in body.modules() if isinstance(m, nn.LayerNorm)]
    try:
        with torch.no_grad():
            f0 = f(x).double()
            recording[0] = False
            f1 = f(x + ZEN_GAMMA * eps).double()
    finally:
        for h in handles:
            h.remove()
    delta = (f0 - f1).abs().sum(dim=(1, 2)).mean()
    log_scale = 0.0
    for v in variances:
        log_scale += 0.5 * log_positive(v, "zen", "a LayerNorm input has zero variance (log undefined)")
    return ZenOutputs(log_positive(delta, "zen", "f(x) = f(x + γε) exactly (Δ = 0, log undefined)"), log_scale)


# --------------------------------------------------------------------------- the proxies


def _sum(values) -> float:
    total = torch.zeros((), dtype=torch.float64)
    for v in values:
        total = total + v.to("cpu", torch.float64)
    return float(total)


def grad_norm(ctx: ScoringContext) -> dict[str, float]:
    """Gradient norm: Σ over the proxy weight matrices θ_p of ‖∂L/∂θ_p‖_F.

    Abdelfattah et al. 2021 ("Zero-cost proxies for lightweight NAS", grad_norm:
    the per-layer L2 norm of the weight gradient, summed over layers). Token
    adaptation: L is the language-model loss of the ``proxy_loss`` pass (RNN
    next-token cross-entropy; BERT masked-LM loss of a fresh generator head);
    each W_j of an RNN linear node and each module weight of BERT is one
    "layer"; the (tied) embedding matrices count as layers too.
    """
    out: LossOutputs = ctx.get("proxy_loss")
    return {"grad_norm": _sum(torch.linalg.vector_norm(g.double()) for g in out.grads)}


def snip(ctx: ScoringContext) -> dict[str, float]:
    """SNIP connection sensitivity Σ |θ ⊙ ∂L/∂θ| over the proxy weights (Lee et al. 2019).

    As in Abdelfattah et al. 2021 (the saliency of the weight mask at 1, summed
    over all weights). Token adaptation: the loss of the ``proxy_loss`` pass
    (see the module docstring) instead of a classification loss.
    """
    out: LossOutputs = ctx.get("proxy_loss")
    return {"snip": _sum((w.double() * g.double()).abs().sum() for w, g in zip(out.weights, out.grads))}


def grasp(ctx: ScoringContext) -> dict[str, float]:
    """GraSP: −Σ θ ⊙ (H g) over the proxy weights, g = ∂L/∂θ, H the Hessian of L (Wang et al. 2020).

    Abdelfattah et al. 2021 take H g = ∂(Σ g_detached ⊙ ∂L/∂θ)/∂θ by a double
    backward; the passes compute the equal gᵀ (H θ) (H is symmetric), whose
    direction θ is known before g, so a batch can run in chunks (BERT, GPT:
    double backward; RNN: forward-over-reverse). The Hessian is restricted to
    the proxy weights (both gradients from the same loss and batch, eval mode).
    Token adaptation: the loss of the ``proxy_loss_hvp`` pass (see the module
    docstring). Higher values mean that pruning the weights would reduce
    gradient flow less.
    """
    return {"grasp": -ctx.get("proxy_loss_hvp").theta_hg}


def fisher(ctx: ScoringContext) -> dict[str, float]:
    """Fisher information of the linear ops' output units (Theis et al. 2018; Turner et al. 2020, BlockSwap).

    Per unit k of a linear op with output a [samples, positions, units]:
    ½ · mean_n (Σ_pos a_{n,pos,k} · ∂L/∂a_{n,pos,k})², summed over units and
    ops (Abdelfattah et al. 2021's fisher, whose spatial positions become the
    sequence positions). RNN: samples are the batch's sequences, positions the
    time steps; ops are every linear node (output before its activation) and
    the tied decoder (the logits). BERT: samples are the sequences, positions
    the tokens; ops are every ``nn.Linear`` and ``nn.Conv1d`` of the encoder
    (not the temporary MLM head). L as in the ``proxy_loss`` pass.
    """
    out: LossOutputs = ctx.get("proxy_loss")
    if out.fisher is None:  # pragma: no cover - the pass fills it when asked for "fisher"
        raise UndefinedScore("fisher: the loss pass did not capture the linear outputs")
    if not out.fisher:
        raise UndefinedScore("fisher: the model has no linear op")
    return {"fisher": _sum(t.sum() for _, t in out.fisher)}


def synflow(ctx: ScoringContext) -> dict[str, float]:
    """SynFlow in log space: ``synflow`` = ln Σ_θ |θ ⊙ ∂R/∂θ| (natural log of Tanaka et al. 2020's score).

    Data-free, as in Tanaka et al. 2020 and Abdelfattah et al. 2021: every
    parameter replaced by its absolute value (float64 copies; the model is not
    changed), an all-ones input at the embedding output (batch of one, the
    scoring batch's sequence length), R = Σ of the outputs (RNN: the tied
    decoder's logits; BERT: ``last_hidden_state``, with each LayerNorm reduced
    to its affine part, since normalising a constant input gives 0). The sum
    is a log-sum-exp of per-weight ln|θ| + ln|∂R/∂θ| and the backward seed is
    rescaled by an exact power of two, so the score stays finite where the
    plain sum exceeds float32 or float64. If the float64 forward or backward
    itself overflows, the score is NaN with that reason (never a silent number).
    """
    return {"synflow": ctx.get("proxy_synflow").log_synflow}


def naswot(ctx: ScoringContext) -> dict[str, float]:
    """NASWOT v2: ln|det K| with K_ij = number of code bits on which samples i and j agree (Mellor et al. 2021).

    Samples are the batch's sequences (as Mellor et al.'s rows are the
    minibatch's images). A unit's bit is the side of its nonlinearity,
    1[z > 0] of its input z. RNN: every activation node at every step of every
    layer (clean scoring batch). This differs from the paper's
    ``activation_distance`` only for sigmoid nodes, whose output code
    1[σ(z) > 0] is constantly 1 there; here it is 1[z > 0] ⇔ 1[σ(z) > ½], the
    side of the unit's saturation, as for tanh and leaky ReLU. BERT: every unit
    of every feed-forward GELU call at every real token, so one sequence's code
    has Σ_calls S·I bits (GELU(z) > 0 ⇔ z > 0); padding bits count for neither
    sample.

    Raises:
        UndefinedScore: no activation unit, or K singular.
    """
    k = ctx.get("proxy_codes").naswot_kernel
    if k is None:
        raise UndefinedScore("naswot: the model has no activation unit")
    return {"naswot": logdet(k)}


def zen(ctx: ScoringContext) -> dict[str, float]:
    """Zen-score (Lin et al. 2021), adapted: ln Δ + Σ ln σ_norm.

    x, ε ~ N(0, 1) at the embedding output (the scoring batch's shape; a
    generator seeded with the scoring seed), Δ = mean over samples of
    Σ |f(x) − f(x + 0.01 ε)|, f = the last layer's output (RNN, before the
    decoder) or ``last_hidden_state`` (BERT). Zen assumes batch-norm networks
    and adds Σ ln √(mean BN running variance); BERT has LayerNorm instead, so
    the term is Σ over the encoder's LayerNorms of ln √(mean over tokens of the
    input's variance over features) in the forward of f(x); the RNN has no
    normalisation, so the term is 0. The model's own initialisation is kept
    (Zen re-draws Gaussian weights) and one draw is used (Zen averages
    repeats).
    """
    z = ctx.get("proxy_zen")
    return {"zen": z.log_delta + z.log_norm_scale}


#: proxy -> (function, needs): what :func:`register_proxies` registers.
_NEEDS = {
    "grad_norm": (grad_norm, ["proxy_loss"]),
    "snip": (snip, ["proxy_loss"]),
    "grasp": (grasp, ["proxy_loss_hvp"]),
    "fisher": (fisher, {"proxy_loss": {"fisher"}}),
    "synflow": (synflow, ["proxy_synflow"]),
    "naswot": (naswot, ["proxy_codes"]),
    "zen": (zen, ["proxy_zen"]),
}


def register_proxies(family: str) -> None:
    """Register every proxy for ``family``, whose package has registered the five proxy passes.

    Raises:
        ValueError: an undeclared family, or proxies registered twice.
    """
    for name, (fn, needs) in _NEEDS.items():
        register(name, family, needs=needs)(fn)
