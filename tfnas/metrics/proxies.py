"""The established zero-cost proxies on both spaces (METRICS.md "Beyond the paper").

Each family is registered for ``"rnn"`` and ``"bert"`` and is a pure function
of the passes in :mod:`tfnas.passes.proxies`, whose docstring fixes the
adaptation to token inputs: the input x is the embedding output; the loss is
the next-token cross-entropy through the tied decoder (RNN) or the masked-LM
loss of a fresh, seeded ELECTRA generator head with 15 % of the tokens masked
(BERT); θ = every weight matrix of the cells and the tied embedding (RNN), or
every Linear / Conv1d / Embedding weight of the encoder (BERT), never biases,
LayerNorm parameters or the temporary head. Sums are taken in float64.

| family | value | source |
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

import torch

from tfnas.engine import ScoringContext
from tfnas.metrics.common import logdet
from tfnas.metrics.registry import SPACES, UndefinedScore, register
from tfnas.passes import proxies as _passes  # noqa: F401  (registers the proxy passes)
from tfnas.passes.proxies import LossOutputs

#: The proxy families, in the order of conf/metrics/proxies.yaml.
PROXIES = ("grad_norm", "snip", "grasp", "fisher", "synflow", "naswot", "zen")


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

    As Abdelfattah et al. 2021 compute it: H g = ∂(Σ g_detached ⊙ ∂L/∂θ)/∂θ by a
    double backward, with the Hessian restricted to the proxy weights (both
    gradients from the same loss and batch, eval mode). Token adaptation: the
    loss of the ``proxy_loss_hvp`` pass (see the module docstring). Higher
    values mean that pruning the weights would reduce gradient flow less.
    """
    out: LossOutputs = ctx.get("proxy_loss_hvp")
    if out.hvp is None:  # pragma: no cover - the hvp pass always fills it
        raise UndefinedScore("grasp: the Hessian-gradient product was not computed")
    return {"grasp": -_sum((w.double() * h.double()).sum() for w, h in zip(out.weights, out.hvp))}


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
    if out.fisher is None:  # pragma: no cover - the pass fills it when fisher is requested
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


_FAMILIES = {
    "grad_norm": (grad_norm, ["proxy_loss"]),
    "snip": (snip, ["proxy_loss"]),
    "grasp": (grasp, ["proxy_loss_hvp"]),
    "fisher": (fisher, ["proxy_loss"]),
    "synflow": (synflow, ["proxy_synflow"]),
    "naswot": (naswot, ["proxy_codes"]),
    "zen": (zen, ["proxy_zen"]),
}

for _space in SPACES:
    for _name, (_fn, _needs) in _FAMILIES.items():
        register(_name, _space, needs=_needs)(_fn)
