"""The paper's transformer metrics on NAS-Bench-BERT (docs/METRICS.md, "BERT space").

All read the one ``("bert", "grad")`` pass (:mod:`tfnas.scoring.bert.passes`): a
forward of the scoring batch and the backward of Σ ``last_hidden_state``.
"Normalized" variants divide each sum by its number of terms (weight matrices
or captured outputs, not elements). Sums are taken in float64.

Published counterparts (Serianni & Kalita 2023, BERT table): Synaptic
Diversity (Zhou et al. 2022, TF-TAS), Synaptic Saliency (Tanaka et al. 2020),
Activation Distance (Mellor et al. 2021), Jacobian Score / its cosine
variant, Number of Parameters, Head Importance (Michel et al. 2019), Head
Confidence and Softmax Confidence (Voita et al. 2019, adapted).
"""

from __future__ import annotations

import torch

from tfnas.scoring.api import ScoringContext, UndefinedScore, register
from tfnas.scoring.bert.passes import BertGradOutputs
from tfnas.scoring.scores import cosine_score, covariance_score, layer_covariances

#: The benchmark's deepest encoder: the per-layer hidden covariance scores are named up to it.
MAX_LAYERS = 4


def _grad(ctx: ScoringContext) -> BertGradOutputs:
    return ctx.get("grad")


def _with_normalized(name: str, terms: list[float], what: str) -> dict[str, float]:
    if not terms:
        raise UndefinedScore(f"{name}: the model has no {what}")
    total = float(sum(terms))
    return {name: total, f"{name}_normalized": total / len(terms)}


def _nuclear(t: torch.Tensor) -> float:
    return float(torch.linalg.matrix_norm(t.to(torch.float64), ord="nuc"))


@register(
    "synaptic_diversity", "bert", needs=["grad"], outputs=["synaptic_diversity", "synaptic_diversity_normalized"]
)
def synaptic_diversity(ctx: ScoringContext) -> dict[str, float]:
    """Σ ‖W‖_nuc · ‖∂W‖_nuc over every linear of every token-mixing block (Zhou et al. 2022, TF-TAS).

    SA and DSC blocks include their output dense (and DSC its kernel generator);
    LT contributes its input projection. Normalized: / number of matrices.
    """
    terms = [_nuclear(w) * _nuclear(g) for _, w, g in _grad(ctx).mixing]
    return _with_normalized("synaptic_diversity", terms, "token-mixing linears")


@register(
    "synaptic_saliency", "bert", needs=["grad"], outputs=["synaptic_saliency", "synaptic_saliency_normalized"]
)
def synaptic_saliency(ctx: ScoringContext) -> dict[str, float]:
    """Σ |W ⊙ ∂W| over every feed-forward linear (dense in, extra I→I, dense out) (Tanaka et al. 2020).

    Normalized: / number of feed-forward matrices.
    """
    terms = [float((w.double() * g.double()).abs().sum()) for _, w, g in _grad(ctx).feed_forward]
    return _with_normalized("synaptic_saliency", terms, "feed-forward linears")


@register(
    "activation_distance",
    "bert",
    needs=["grad"],
    outputs=["activation_distance", "activation_distance_normalized"],
)
def activation_distance(ctx: ScoringContext) -> dict[str, float]:
    """Σ over GELU calls of the sum of all entries of ``c cᵀ + (1−c)(1−c)ᵀ`` [S, S], c = 1[out > 0]
    of the first sequence's output [S, I] (Mellor et al. 2021's kernel, summed, not log-det).

    The entry sum equals ``Σ_f n_f² + (S − n_f)²`` with n_f the number of
    positions where feature f is active, computed that way (exact, O(S·I)).
    Normalized: / number of GELU calls.

    Note (compat): the paper's published "Activation Distance" column is this
    sum times a hook multiplicity m_i. Its notebook registered the hook on a
    GELU module that transformers shared between all layers and models, so
    hooks piled up from model to model (m_i = published total / published
    normalized / number of GELU calls grows by each architecture's layer
    count, with resets between notebook sessions). The normalized column is
    unaffected and comparable as is.
    """
    terms = []
    for out in _grad(ctx).activations:
        c = (out > 0).to(torch.float64)
        n_active = c.sum(dim=0)
        s = c.shape[0]
        terms.append(float((n_active.square() + (s - n_active).square()).sum()))
    return _with_normalized("activation_distance", terms, "feed-forward activations")


@register("jacobian_covariance", "bert", needs=["grad"], outputs=["jacobian_covariance"])
def jacobian_covariance(ctx: ScoringContext) -> dict[str, float]:
    """``S(G)`` with G = ∂(position-embedding weight) [512, E], rows = the E embedding dims
    (E×E correlation over positions). The paper's CSV column "Jacobian Score"."""
    return {"jacobian_covariance": covariance_score(_grad(ctx).position_grad.T)}


@register("jacobian_cosine", "bert", needs=["grad"], outputs=["jacobian_cosine"])
def jacobian_cosine(ctx: ScoringContext) -> dict[str, float]:
    """``Cos(G)`` with the rows of :func:`jacobian_covariance` (the CSV's "Jacobian Score Normalized")."""
    return {"jacobian_cosine": cosine_score(_grad(ctx).position_grad.T)}


@register("num_params", "bert", needs=[], outputs=["num_params"])
def num_params(ctx: ScoringContext) -> dict[str, float]:
    """Number of parameters of the encoder (all of them, as the paper counted)."""
    return {"num_params": float(sum(p.numel() for p in ctx.model.parameters()))}


@register("head_importance", "bert", needs=["grad"], outputs=["head_importance", "head_importance_normalized"])
def head_importance(ctx: ScoringContext) -> dict[str, float]:
    """Σ |W ⊙ ∂W| over the token-mixing operations' own projections (Michel et al. 2019).

    Default: query, key, value (SA, DSC), WMA's extra matrix, DSC's
    convolution-value projection, LT's input projection. Compat: the paper's
    rule, own linears with output size ≥ 128. Normalized: / number of matrices.
    """
    terms = [float((w.double() * g.double()).abs().sum()) for _, w, g in _grad(ctx).importance]
    return _with_normalized("head_importance", terms, "head-importance projections")


@register("head_confidence", "bert", needs=["grad"], outputs=["head_confidence", "head_confidence_normalized"])
def head_confidence(ctx: ScoringContext) -> dict[str, float]:
    """Σ over query/key/value (SA, DSC), WMA and LT input-projection outputs o [B, S, out] of
    mean over (batch, features) of max over positions (Voita et al. 2019, adapted).
    Normalized: / number of projections."""
    return _with_normalized("head_confidence", list(_grad(ctx).confidence), "confidence projections")


@register(
    "head_softmax_confidence",
    "bert",
    needs=["grad"],
    outputs=["head_softmax_confidence", "head_softmax_confidence_normalized"],
)
def head_softmax_confidence(ctx: ScoringContext) -> dict[str, float]:
    """Σ over attention softmaxes [B, heads, S, S] (SA, DSC) and LT's softmax over d of its
    transform [B, heads, S, d] of the mean of the max over the head axis (as the paper did).
    DSC's kernel softmax does not count. Normalized: / number of softmaxes."""
    return _with_normalized("head_softmax_confidence", list(_grad(ctx).softmax_confidence), "softmax outputs")


@register(
    "hidden_covariance",
    "bert",
    needs={"grad": {"hidden_states"}},
    outputs=[f"hidden_covariance_l{i}" for i in range(1, MAX_LAYERS + 1)]
    + ["hidden_covariance_last", "hidden_covariance_mean"],
)
def hidden_covariance(ctx: ScoringContext) -> dict[str, float]:
    """The paper's RNN metric on each encoder layer: S(H_l), H_l = layer l's output [H, real tokens]
    (rows are hidden units, the batch's real tokens the observations; Serianni & Kalita 2023, §3.1,
    which measured it on RNNs only). ``_last``: the last layer's; ``_mean``: the mean over layers.
    A 2-layer encoder's l3 and l4 are undefined."""
    return layer_covariances(_grad(ctx).hidden_states, "hidden_covariance", MAX_LAYERS, summaries=True)
