"""The transformer metrics on LTS GPT-2 decoders, computed with the causal mask.

The paper's transformer metrics (Serianni & Kalita 2023; METRICS.md "BERT
space") are the same functions as NAS-Bench-BERT's
(:mod:`tfnas.scoring.bert.metrics`), registered for this family: the
``("gpt", "grad")`` pass (:mod:`tfnas.scoring.gpt.passes`) fills the same
fields for the decoder.

| metric | on the decoder |
|---|---|
| ``synaptic_diversity`` | Σ ‖W‖_nuc·‖∂W‖_nuc over query, key, value and output projection of every block |
| ``synaptic_saliency`` | Σ \\|W ⊙ ∂W\\| over both MLP linears of every block |
| ``activation_distance`` | Σ over blocks of the entries of c cᵀ + (1−c)(1−c)ᵀ, c = 1[GELU out > 0] of the first sequence [S, F] |
| ``head_importance`` | Σ \\|W ⊙ ∂W\\| over query, key and value (Michel et al. 2019, as the paper computed it) |
| ``head_confidence`` | Σ over query, key, value outputs of mean over (batch, features) of max over positions |
| ``head_softmax_confidence`` | Σ over blocks of the mean, over the causally allowed entries, of the max over heads of the attention probabilities |
| ``jacobian_covariance``, ``jacobian_cosine`` | S(G), Cos(G): G = ∂ of the position table at the S positions used, [S, D], rows the D dims |
| ``input_jacobian_covariance``, ``input_jacobian_cosine`` | S(J), Cos(J): J = ∂(Σ o)/∂e arranged [B, S·D], rows the sequences (NASWOT v1's Jacobian, the RNN space's definition) |
| ``hidden_covariance`` | S(H_l) of each block's output [D, B·S] (the paper's RNN metric), ``_l1`` … ``_l16``, ``_last``, ``_mean`` |
| ``num_params`` | parameters: ``num_params`` (all), ``_nonembedding`` (blocks + final LayerNorm, LTS's "nonembedding"), ``_attention``, ``_ffn`` |

Most give a ``_normalized`` variant (the sum divided by its number of terms).
o is the residual stream before the final LayerNorm (see the pass for why).
"""

from __future__ import annotations

from tfnas.models.lts_gpt2 import parameter_counts
from tfnas.scoring.api import ScoringContext, register
from tfnas.scoring.bert import metrics as transformer
from tfnas.scoring.gpt.passes import GptGradOutputs, decoder
from tfnas.scoring.scores import cosine_score, covariance_score, layer_covariances

#: The deepest decoder of the LTS GPT-2 space: per-block scores are named up to it.
MAX_LAYERS = 16

for _name in (
    "synaptic_diversity",
    "synaptic_saliency",
    "activation_distance",
    "head_importance",
    "head_confidence",
    "head_softmax_confidence",
):
    register(_name, "gpt", needs=["grad"], outputs=[_name, f"{_name}_normalized"])(getattr(transformer, _name))
for _name in ("jacobian_covariance", "jacobian_cosine"):
    register(_name, "gpt", needs=["grad"])(getattr(transformer, _name))


def _input_jacobian(ctx: ScoringContext):
    j = ctx.get("grad").input_grad
    return j.reshape(j.shape[0], -1)  # [B, S·D]: rows are the sequences


@register("input_jacobian_covariance", "gpt", needs={"grad": {"input_jacobian"}})
def input_jacobian_covariance(ctx: ScoringContext) -> dict[str, float]:
    """S(J), J = ∂(Σ o)/∂e arranged [B, S·D] (rows are the batch's sequences; NASWOT v1, Mellor et al. 2021)."""
    return {"input_jacobian_covariance": covariance_score(_input_jacobian(ctx))}


@register("input_jacobian_cosine", "gpt", needs={"grad": {"input_jacobian"}})
def input_jacobian_cosine(ctx: ScoringContext) -> dict[str, float]:
    """Cos(J) with the rows of :func:`input_jacobian_covariance` (Serianni & Kalita 2023's cosine score)."""
    return {"input_jacobian_cosine": cosine_score(_input_jacobian(ctx))}


@register(
    "hidden_covariance",
    "gpt",
    needs={"grad": {"hidden_states"}},
    outputs=[f"hidden_covariance_l{i}" for i in range(1, MAX_LAYERS + 1)]
    + ["hidden_covariance_last", "hidden_covariance_mean"],
)
def hidden_covariance(ctx: ScoringContext) -> dict[str, float]:
    """The paper's hidden covariance on each block: S(H_l), H_l = block l's output arranged [D, B·S]
    (rows are the hidden units, every token of the batch an observation; Serianni & Kalita 2023, §3.1).

    ``_l<i>`` past the decoder's depth are undefined; ``_last`` is the last
    block's score and ``_mean`` the mean over blocks, which compare decoders
    of different depths. Higher is better.
    """
    out: GptGradOutputs = ctx.get("grad")
    return layer_covariances(out.hidden_states, "hidden_covariance", MAX_LAYERS, summaries=True)


@register(
    "num_params",
    "gpt",
    needs=[],
    outputs=["num_params", "num_params_nonembedding", "num_params_attention", "num_params_ffn"],
)
def num_params(ctx: ScoringContext) -> dict[str, float]:
    """Parameters by part (:func:`~tfnas.models.lts_gpt2.parameter_counts`): all of them (tied
    tables once), the non-embedding ones (blocks and final LayerNorm, LTS's "nonembedding", whose
    ranking LTS reports), attention and MLP."""
    counts = parameter_counts(decoder(ctx.model))
    return {
        "num_params": float(counts["total"]),
        "num_params_nonembedding": float(counts["nonembedding"]),
        "num_params_attention": float(counts["Attn"]),
        "num_params_ffn": float(counts["FFN"]),
    }
