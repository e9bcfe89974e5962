"""The masked-LM loss of the BERT proxies: token masking and a fresh ELECTRA generator head.

Masking: per sequence, ``max(1, round(0.15 n))`` of its n eligible tokens
(real tokens, ``attention_mask`` = 1, that are not special tokens), chosen
uniformly without replacement by a private generator seeded with the scoring
seed (:func:`tfnas.models.electra.select_positions`, ``share_of="candidates"``),
all replaced by [MASK] (no 80/10/10 or 85/15 split). The head (Clark et
al. 2020, ELECTRA's generator head): dense H→E, GELU, LayerNorm(E, eps = the
config's), then the decoder tied to the word embeddings [V, E] plus an output
bias; dense weight N(0, ``initializer_range``), biases 0, LayerNorm weight 1,
drawn from a generator seeded with the scoring seed. The loss is the mean
cross-entropy of the original tokens at the masked positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
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
        w = torch.randn(embedding, hidden, generator=seeded_generator(seed)) * std
        z = lambda n: torch.zeros(n, device=device)  # noqa: E731
        return cls(w.to(device), z(embedding), torch.ones(embedding, device=device), z(embedding), z(vocab), eps)

    def logits(self, hidden: Tensor, word_embeddings: Tensor) -> Tensor:
        """[N, H] encoder outputs -> [N, V] logits with the decoder tied to ``word_embeddings`` [V, E]."""
        h = F.gelu(F.linear(hidden, self.dense_w, self.dense_b))
        h = F.layer_norm(h, (h.shape[-1],), self.ln_w, self.ln_b, self.eps)
        return F.linear(h, word_embeddings, self.out_b)
