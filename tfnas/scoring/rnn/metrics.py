"""The paper's training-free metrics on the NAS-Bench-NLP space.

Definitions: docs/METRICS.md "RNN space" (Serianni & Kalita, ACL 2023, §3 and
their published per-architecture tables). Each function is a pure function of
pass outputs (:mod:`tfnas.scoring.rnn.passes`). ``ctx.paper_compat`` switches to the
published columns where the paper's code differs from its text:

- ``jacobian_covariance``: default S(J) of the Jacobian (NASWOT v1); compat
  S(e) of the embedding output arranged [70, 50·400], as the CSV holds.
- ``jacobian_large_noise``: default 1 − |S(J) − S(J_10)|; compat the
  flipped sign |S(J) − S(J_10)| − 1.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tfnas.models.awd_lm import count_parameters
from tfnas.scoring.api import ScoringContext, UndefinedScore, register
from tfnas.scoring.scores import NaswotKernel, cosine_score, covariance_score, layer_covariances, logdet

LAYERS = 3  # the benchmark's depth; the family's outputs are named per layer


def _by_sample(j: Tensor) -> Tensor:
    """[seq, batch, d] -> [batch, seq·d]: rows are batch samples (NASWOT v1)."""
    return j.permute(1, 0, 2).reshape(j.shape[1], -1)


@register(
    "hidden_covariance",
    "rnn",
    needs=["forward"],
    outputs=[f"hidden_covariance_l{i + 1}" for i in range(LAYERS)],
)
def hidden_covariance(ctx: ScoringContext) -> dict[str, float]:
    """Hidden covariance of each layer: S(H_l), the paper's new metric (§3.1).

    H_l = the states h^l_t fed into layer l's cell at t = 0..69, arranged
    [hidden_l, 50·70] (rows are hidden units); S is the NASWOT v1 covariance
    score (:func:`~tfnas.scoring.scores.covariance_score`). Higher is better.

    A layer whose states stay exactly zero (e.g. recipe 1009374), or with a
    unit that never varies, gets NaN with the reason; the other layers keep
    their scores.
    """
    return layer_covariances(ctx.get("forward").states, "hidden_covariance")


@register("activation_distance", "rnn", needs={"forward": {"activation_codes"}})
def activation_distance(ctx: ScoringContext) -> dict[str, float]:
    """NASWOT activation distance over every activation-node call of one forward.

    K [50, 50] = Σ over activation outputs a [50, H] (every node, step and
    layer) of c cᵀ + (1−c)(1−c)ᵀ with c = 1[a > 0] (:class:`~tfnas.scoring.scores.NaswotKernel`,
    all codes side by side); the score is ld(K) = log|det K| (Mellor et al.
    2021; docs/METRICS.md).

    Raises:
        UndefinedScore: the cell has no activation node, or K is singular.
    """
    codes = ctx.get("forward").codes
    if not codes:
        raise UndefinedScore("the cell has no activation node")
    kernel = NaswotKernel()
    kernel.add(torch.cat(codes, dim=1))
    return {"activation_distance": logdet(kernel.kernel)}


@register("synaptic_saliency", "rnn", needs={"grad": {"weight_grads"}})
def synaptic_saliency(ctx: ScoringContext) -> dict[str, float]:
    """Synaptic saliency Σ|W ⊙ ∂W| (Tanaka et al. 2020, SynFlow's saliency) of Σ y.

    Over the tied embedding matrix and every linear node's weights for inputs
    2…n (the first input's weight is skipped, as the paper did), in float64.
    """
    total = None
    for _, w, g in ctx.get("grad").weight_grads:
        term = (w.double() * g.double()).abs().sum()
        total = term if total is None else total + term
    return {"synaptic_saliency": float(total)}


@register("hidden_synaptic_saliency", "rnn", needs=["grad"])
def hidden_synaptic_saliency(ctx: ScoringContext) -> dict[str, float]:
    """Σ_l Σ_t Σ |h^l_t ⊙ ∂h^l_t| (the paper's hidden-state saliency).

    ∂h^l_t is the gradient of Σ y with respect to the state as it leaves its
    cell: only the paths through the next step's ``h_prev_0`` and through the
    layer's output count (docs/METRICS.md). t = 0 (the zero state) adds nothing.
    """
    out = ctx.get("grad")
    total = 0.0
    for h, g in zip(out.states, out.state_grads):
        total += float((h[1:].double() * g.double()).abs().sum())
    return {"hidden_synaptic_saliency": total}


def _jacobian_score(ctx: ScoringContext, key: str, kind: str) -> float:
    """S (``kind="S"``) or Cos (``"Cos"``) of J (``key="clean"``) or of J_a (an amplitude key).

    Computed once per architecture: the Jacobian and noise families read the
    same scores, e.g. S(J) four times when all are requested.
    """

    def compute() -> float:
        grad = ctx.get("grad")
        j = grad.jacobian if key == "clean" else grad.noise[key]
        return (covariance_score if kind == "S" else cosine_score)(_by_sample(j))

    return ctx.memo(("jacobian_score", key, kind), compute)


@register("jacobian_covariance", "rnn", needs=["grad"])
def jacobian_covariance(ctx: ScoringContext) -> dict[str, float]:
    """Jacobian covariance S(J), J = ∂(Σ y)/∂e arranged [50, 70·400] (NASWOT v1).

    Compat: S(e), e arranged [70, 50·400] (time steps as rows), which is what
    the paper's CSV column holds; it does not depend on the architecture.
    """
    if ctx.paper_compat:
        e = ctx.get("grad").e
        return {"jacobian_covariance": covariance_score(e.reshape(e.shape[0], -1))}
    return {"jacobian_covariance": _jacobian_score(ctx, "clean", "S")}


@register("jacobian_cosine", "rnn", needs=["grad"])
def jacobian_cosine(ctx: ScoringContext) -> dict[str, float]:
    """Cos(J): the cosine score of the Jacobian's rows (batch samples)."""
    return {"jacobian_cosine": _jacobian_score(ctx, "clean", "Cos")}


def _noise_scores(ctx: ScoringContext, keys: tuple[str, ...]) -> tuple[float, float, list[float], list[float]]:
    """S(J), Cos(J) and S(J_a), Cos(J_a) for the given amplitude keys."""
    s, c = _jacobian_score(ctx, "clean", "S"), _jacobian_score(ctx, "clean", "Cos")
    return s, c, [_jacobian_score(ctx, k, "S") for k in keys], [_jacobian_score(ctx, k, "Cos") for k in keys]


@register(
    "jacobian_small_noise",
    "rnn",
    needs={"grad": {"noise:small"}},
    outputs=["jacobian_small_noise", "jacobian_small_noise_cosine"],
)
def jacobian_small_noise(ctx: ScoringContext) -> dict[str, float]:
    """1 − |S(J) − S(J_0.1)| and 1 − |Cos(J) − Cos(J_0.1)| (noise amplitude 0.1)."""
    s, c, (s1,), (c1,) = _noise_scores(ctx, ("small",))
    return {"jacobian_small_noise": 1 - abs(s - s1), "jacobian_small_noise_cosine": 1 - abs(c - c1)}


@register(
    "jacobian_large_noise",
    "rnn",
    needs={"grad": {"noise:large"}},
    outputs=["jacobian_large_noise", "jacobian_large_noise_cosine"],
)
def jacobian_large_noise(ctx: ScoringContext) -> dict[str, float]:
    """1 − |S(J) − S(J_10)| and 1 − |Cos(J) − Cos(J_10)| (noise amplitude 10).

    Compat: the covariance variant has the paper's flipped sign, |S(J) − S(J_10)| − 1.
    """
    s, c, (s10,), (c10,) = _noise_scores(ctx, ("large",))
    diff = abs(s - s10)
    return {
        "jacobian_large_noise": diff - 1 if ctx.paper_compat else 1 - diff,
        "jacobian_large_noise_cosine": 1 - abs(c - c10),
    }


@register(
    "jacobian_more_noise",
    "rnn",
    needs={"grad": {"noise:small", "noise:large", "noise:very_large"}},
    outputs=["jacobian_more_noise", "jacobian_more_noise_cosine"],
)
def jacobian_more_noise(ctx: ScoringContext) -> dict[str, float]:
    """S(J)·S(J_0.1)·S(J_10)·S(J_100) and the same product of cosine scores."""
    s, c, ss, cs = _noise_scores(ctx, ("small", "large", "very_large"))
    return {
        "jacobian_more_noise": s * ss[0] * ss[1] * ss[2],
        "jacobian_more_noise_cosine": c * cs[0] * cs[1] * cs[2],
    }


@register("num_params", "rnn", needs=[])
def num_params(ctx: ScoringContext) -> dict[str, float]:
    """Trainable parameters, the tied weight counted once (the benchmark's ``num_params``)."""
    return {"num_params": float(count_parameters(ctx.model))}
