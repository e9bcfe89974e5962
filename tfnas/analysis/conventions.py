"""Which ground truth to correlate with, which way is "better", and what the paper published.

Sign convention (``docs/METRICS.md``, "Sign convention"): every correlation is
between a metric's score and a *quality* that increases when the architecture
is better, so a positive τ means "higher score, better architecture". Losses
and perplexities are negated (``quality = −test_loss``); GLUE scores are used
as they are.

The published values are the |Kendall τ| / |Spearman ρ| of Serianni & Kalita
(ACL 2023) as tabulated in ``docs/PAPER.md``, computed from the paper's own
per-architecture tables (NAS-Bench-NLP: PTB test loss over 8,794
architectures; NAS-Bench-BERT: GLUE over 500 architectures).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

from tfnas.spaces.nasbench_bert.benchmark import GLUE_TASK_KEYS

#: Per-task GLUE columns of NAS-Bench-BERT, followed by their average.
BERT_TASKS: tuple[str, ...] = GLUE_TASK_KEYS

#: Default targets per search space; the first one is the *primary* target
#: (the one tables are sorted by and figures are drawn for).
DEFAULT_TARGETS: dict[str, tuple[str, ...]] = {
    "nasbench_nlp": ("test_loss",),
    "nasbench_bert": ("glue",) + BERT_TASKS,
    "lts_gpt2_wt103": ("valid_ppl", "test_ppl"),
    "lts_gpt2_lm1b": ("valid_ppl", "test_ppl"),
}

# Substrings that mark a target where lower values are better.
_LOWER_IS_BETTER = ("loss", "ppl", "perplexity", "error")


def quality_sign(target: str) -> int:
    """+1 when higher ``target`` values are better, −1 when lower are better.

    Losses, perplexities and error rates (any target whose name contains
    ``loss``, ``ppl``, ``perplexity`` or ``error``) are "lower is better";
    everything else (GLUE and its tasks, accuracies) is "higher is better".
    """
    name = target.lower()
    return -1 if any(s in name for s in _LOWER_IS_BETTER) else 1


def quality_label(target: str) -> str:
    """How the quality of ``target`` is written in tables: ``−test_loss`` or ``glue``."""
    return f"−{target}" if quality_sign(target) < 0 else target


def default_targets(space: str, available: Iterable[str]) -> list[str]:
    """The targets to analyse for ``space``, restricted to those the records carry.

    Args:
        space: search-space name of the records.
        available: ground-truth keys present in the records' ``truth``.

    Returns:
        The space's default targets that are available, in order. For an
        unknown space, every numeric-looking truth key except ``status``.

    Raises:
        ValueError: none of the space's targets is in the records.
    """
    available = list(available)
    wanted = DEFAULT_TARGETS.get(space)
    if wanted is None:
        found = [t for t in available if t != "status"]
    else:
        found = [t for t in wanted if t in available]
    if not found:
        raise ValueError(
            f"no ground truth to analyse for space {space!r}: the records' truth has keys {sorted(available)}, "
            f"expected one of {list(wanted or [])}; set targets=[...] explicitly"
        )
    return found


@dataclass(frozen=True)
class Published:
    """One published correlation.

    Attributes:
        tau: |Kendall τ| in the paper's table.
        rho: |Spearman ρ| in the paper's table.
        sign: +1 / −1 when the paper states the direction (score vs quality),
            None when it lists only the magnitude.
        note: where the number comes from.
    """

    tau: float
    rho: float
    sign: int | None = None
    note: str = ""


_NLP_NOTE = "paper, NAS-Bench-NLP PTB test loss, 8,794 archs"
_BERT_NOTE = "paper, NAS-Bench-BERT GLUE, 500 archs"
# Hidden covariance is the paper's metric, defined so that higher is better
# (NASWOT-style covariance score S); the paper reports only |τ| for the rest.
PUBLISHED: dict[tuple[str, str], dict[str, Published]] = {
    ("nasbench_nlp", "test_loss"): {
        "hidden_covariance_l1": Published(0.372, 0.524, +1, _NLP_NOTE),
        "hidden_covariance_l2": Published(0.314, 0.457, +1, _NLP_NOTE),
        "hidden_covariance_l3": Published(0.247, 0.367, +1, _NLP_NOTE),
        "jacobian_more_noise_cosine": Published(0.280, 0.417, None, _NLP_NOTE),
        "jacobian_large_noise_cosine": Published(0.273, 0.410, None, _NLP_NOTE),
        "jacobian_more_noise": Published(0.273, 0.411, None, _NLP_NOTE),
        "hidden_synaptic_saliency": Published(0.268, 0.393, None, _NLP_NOTE),
        "jacobian_cosine": Published(0.264, 0.398, None, _NLP_NOTE),
        "jacobian_large_noise": Published(0.259, 0.396, None, _NLP_NOTE),
        "activation_distance": Published(0.223, 0.338, None, _NLP_NOTE),
        "synaptic_saliency": Published(0.122, 0.183, None, _NLP_NOTE),
        "jacobian_covariance": Published(0.003, 0.005, None, _NLP_NOTE + " (compat column: embedding only)"),
    },
    ("nasbench_bert", "glue"): {
        "head_confidence": Published(0.478, 0.716, None, _BERT_NOTE),
        "num_params": Published(0.454, 0.652, None, _BERT_NOTE),
        "head_confidence_normalized": Published(0.299, 0.455, None, _BERT_NOTE),
        "activation_distance": Published(0.222, 0.331, None, _BERT_NOTE),
        "head_softmax_confidence": Published(0.216, 0.326, None, _BERT_NOTE),
        "synaptic_saliency": Published(0.188, 0.281, None, _BERT_NOTE),
        "head_importance": Published(0.164, 0.250, None, _BERT_NOTE),
        "synaptic_diversity": Published(0.156, 0.241, None, _BERT_NOTE),
        "synaptic_saliency_normalized": Published(0.137, 0.201, None, _BERT_NOTE),
        "jacobian_covariance": Published(0.042, 0.067, None, _BERT_NOTE),
    },
}

_LTS_NOTE = "LTS (Javaheripi et al. 2022), decoder parameters vs validation perplexity, the same 200 archs"
# LTS reports ρ only; on LM1B its count is of the Transformer-XL layout of the same configurations.
PUBLISHED[("lts_gpt2_wt103", "valid_ppl")] = {"num_params_nonembedding": Published(math.nan, 0.967, +1, _LTS_NOTE)}
PUBLISHED[("lts_gpt2_lm1b", "valid_ppl")] = {"num_params_nonembedding": Published(math.nan, 0.986, +1, _LTS_NOTE)}

#: Published Spearman ρ with the validation perplexity on the same architectures, per space: what a
#: label-free metric there is set against (docs/PAPER.md): (what, ρ).
REFERENCES: dict[str, tuple[tuple[str, float], ...]] = {
    "lts_gpt2_wt103": (("non-embedding parameters (LTS, Javaheripi et al. 2022)", 0.967), ("LPZero (2024)", 0.980)),
    "lts_gpt2_lm1b": (("non-embedding parameters (LTS, Javaheripi et al. 2022)", 0.986),),
}

#: The paper's headline metrics per space: its best metric (and, for
#: NAS-Bench-BERT, the parameter-count baseline it compares with). The
#: learned combination is set against each of them on its own architectures.
HEADLINE_METRICS: dict[str, tuple[str, ...]] = {
    "nasbench_nlp": ("hidden_covariance_l1",),
    "nasbench_bert": ("head_confidence", "num_params"),
    "lts_gpt2_wt103": ("num_params_nonembedding",),
    "lts_gpt2_lm1b": ("num_params_nonembedding",),
}

#: Best published τ on NAS-Bench-BERT since the paper (docs/PAPER.md): the bar to beat.
BEST_PUBLISHED_BERT_TAU = 0.53


def published(space: str, target: str, metric: str) -> Published | None:
    """The paper's published correlation of ``metric`` with ``target``, if any."""
    return PUBLISHED.get((space, target), {}).get(metric)
