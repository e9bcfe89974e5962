"""The masked-LM input of the BERT proxies: which tokens are masked, and how.

Masking: per sequence, ``max(1, round(0.15 n))`` of its n eligible tokens
(real tokens, ``attention_mask`` = 1, that are not special tokens), chosen
uniformly without replacement by a private generator seeded with the scoring
seed (:func:`tfnas.models.electra.select_positions`, ``share_of="candidates"``),
all replaced by [MASK] (no 80/10/10 or 85/15 split).

The loss (:mod:`tfnas.scoring.bert.proxies`) is the mean cross-entropy of the
original tokens at the masked positions under a fresh ELECTRA generator head
(:meth:`tfnas.models.electra.GeneratorHead.fresh`, Clark et al. 2020): dense
H→E, GELU, LayerNorm(E, eps = the config's), then the decoder tied to the
word embeddings [V, E] plus an output bias; dense weight N(0,
``initializer_range``) drawn from a generator seeded with the scoring seed,
biases 0, LayerNorm weight 1.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tfnas.models.electra import select_positions
from tfnas.scoring.api import UndefinedScore
from tfnas.scoring.proxies import seeded_generator

#: BERT-uncased ids of [MASK] and of the tokens never masked ([PAD] [UNK] [CLS] [SEP] [MASK]).
MASK_TOKEN_ID = 103
SPECIAL_TOKEN_IDS = (0, 100, 101, 102, 103)
#: Fraction of eligible tokens masked per sequence (ELECTRA's mask_prob).
MASK_PROB = 0.15


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
    chosen = select_positions(ids, attention_mask, special_token_ids, mask_prob, seeded_generator(seed),
                              share_of="candidates")
    if not chosen.any():
        raise UndefinedScore("masked-LM loss: no maskable (non-special, non-padding) token in the batch")
    return torch.where(chosen, torch.full_like(ids, mask_token_id), ids), chosen

