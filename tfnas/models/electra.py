"""The ELECTRA pretraining network around a FlexiBERT discriminator (docs/SPACES.md §2, "Ground-truth training").

Replaced-token detection (Clark et al., ICLR 2020, §2 and Eq. 1), as the
benchmark's models were pretrained:

1. **Masking.** In each sequence, ``round(0.15 · n)`` positions (n = real,
   non-padding tokens; at least 1) are drawn uniformly without replacement
   among the tokens that are not ``[CLS]``, ``[SEP]``, ``[MASK]`` or
   ``[PAD]``. 85 % of the drawn positions are replaced by ``[MASK]``; the
   other 15 % keep their token (ELECTRA's ``pretrain_helpers.mask``).
2. **Generator.** A small FlexiBERT encoder (the same layer list with hidden
   size H/4, heads max(1, h/4) and feed-forward size I/4; see
   :func:`generator_layers`) reads the masked sequence; its MLM head (dense
   H/4 → E, GELU, LayerNorm, decoder tied to the word embeddings, own bias)
   predicts the original token at the drawn positions. The generator loss is
   the mean cross-entropy over those positions.
3. **Corruption.** At every drawn position a token is sampled from the
   generator's softmax (temperature 1, no gradient) and replaces the
   original. The replaced-token-detection label of a position is 1 where the
   resulting token differs from the original; a sample equal to the
   original, and every position not drawn, is labelled 0 ("original").
4. **Discriminator.** The architecture itself reads the corrupted sequence;
   its head (dense H → H, GELU, dense H → 1) gives one logit per token. Its
   loss is the sigmoid cross-entropy averaged over the real tokens.
5. **Loss** = generator MLM loss + 50 × discriminator loss (ELECTRA's
   ``gen_weight`` 1, ``disc_weight`` 50).

Generator and discriminator share one embedding module (word, position and
token-type tables and the embedding LayerNorm), as ELECTRA's reference code
does (both build their embeddings in the ``electra/embeddings`` scope); so the
word-embedding matrix is one tensor, read by both encoders' inputs and by the
generator's MLM decoder.

The optimisation and the Lightning system: :mod:`tfnas.systems.electra`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tfnas.models.flexibert import FlexiBertConfig, FlexiBertModel


# ---------------------------------------------------------------------------- generator configuration
def generator_layers(layers: Iterable[Mapping[str, Any]], size: float = 0.25) -> list[dict]:
    """The generator's layer list: each layer of the discriminator, scaled down.

    Per layer (docs/SPACES.md §2): heads ``max(1, h · size)`` (h/4 by default),
    feed-forward size ``I · size`` (I/4); operation type, parameter and number
    of stacked feed-forward layers unchanged. A DSC layer runs h/2 attention
    heads beside h/2 convolution heads and so needs an even head count; where
    the scaled count is odd (h/4 of h ∈ {2, 4} is always 1) it becomes the
    nearest valid value, 2 (documented deviation: the paper gives no rule).

    Args:
        layers: the discriminator's layer dicts (``tfnas.models.flexibert`` format).
        size: the generator's size fraction (ELECTRA-small: 0.25).

    Returns:
        New layer dicts (the inputs are not modified).

    Raises:
        ValueError: ``size`` not in (0, 1], or a layer without the needed fields.
    """
    if not 0.0 < float(size) <= 1.0:
        raise ValueError(f"generator size must be in (0, 1], got {size!r}")
    out = []
    for i, lay in enumerate(layers):
        try:
            heads = max(1, int(lay["num_operation_heads"] * size))
            ffn = max(1, int(round(lay["feed_forward_dimension"] * size)))
        except KeyError as exc:
            raise ValueError(f"layer {i}: missing field {exc.args[0]!r}") from None
        if lay["operation_type"] == "DSC" and heads % 2:
            heads = heads + 1 if heads == 1 else heads - 1  # nearest even count (1 -> 2)
        out.append(dict(lay, num_operation_heads=heads, feed_forward_dimension=ffn))
    return out


def generator_config(config: FlexiBertConfig, size: float = 0.25) -> FlexiBertConfig:
    """The generator's :class:`FlexiBertConfig` for a discriminator ``config``.

    Hidden size ``H · size`` and the layers of :func:`generator_layers`; the
    embedding size E, vocabulary, positions, dropouts, init and mask setting
    are the discriminator's (the embeddings are shared, so E must match).

    Raises:
        ValueError: ``H · size`` is not a whole number, or a scaled layer is
            invalid for the smaller width (e.g. heads not dividing it).
    """
    hidden = config.hidden_size * size
    if hidden != int(hidden) or hidden < 1:
        raise ValueError(f"generator hidden size {config.hidden_size} x {size} = {hidden} is not a positive integer")
    d = config.to_dict()
    for key in ("hidden_size", "layers", "model_type", "transformers_version", "architectures"):
        d.pop(key, None)
    return FlexiBertConfig(hidden_size=int(hidden), layers=generator_layers(config.layers, size), **d)


# ---------------------------------------------------------------------------- heads
class GeneratorHead(nn.Module):
    """ELECTRA's MLM head: dense H_g → E, GELU, LayerNorm, decoder tied to the word embeddings.

    Shapes: hidden [N, H_g] -> logits [N, V]; the decoder weight is the
    ``word_embeddings`` matrix [V, E] (not a copy), plus an own bias [V].
    """

    def __init__(self, hidden_size: int, word_embeddings: nn.Embedding, eps: float = 1e-12):
        super().__init__()
        vocab, emb = word_embeddings.weight.shape
        self.dense = nn.Linear(hidden_size, emb)
        self.act = nn.GELU()
        self.LayerNorm = nn.LayerNorm(emb, eps=eps)
        self.word_embeddings = word_embeddings  # shared module: the tie
        self.bias = nn.Parameter(torch.zeros(vocab))

    @classmethod
    def fresh(
        cls, hidden_size: int, word_embeddings: nn.Embedding, eps: float, std: float, generator: torch.Generator
    ) -> "GeneratorHead":
        """A newly drawn head that leaves the global RNGs untouched (the masked-LM loss of the zero-cost proxies).

        The dense weight is N(0, ``std``) drawn in float32 on the CPU from
        ``generator`` (the same draw whatever the model's dtype); the biases
        are 0 and the LayerNorm weight 1. The head takes the device and dtype
        of ``word_embeddings``; its own parameters do not require gradients,
        and the tied ``word_embeddings`` is untouched.

        Args:
            hidden_size: H, the width of the hidden states it reads.
            word_embeddings: the [V, E] embedding module the decoder is tied to
                (the head lives on its device).
            eps: LayerNorm epsilon.
            std: standard deviation of the dense weight.
            generator: a CPU generator for the dense weight.
        """
        with torch.random.fork_rng(devices=[]):  # nn.Linear's default init draws from the global CPU RNG
            head = cls(hidden_size, word_embeddings, eps)
        like = word_embeddings.weight
        with torch.no_grad():
            head.dense.weight.copy_(torch.randn(head.dense.weight.shape, generator=generator, dtype=torch.float32) * std)
            head.dense.bias.zero_()
        for own in (head.dense, head.LayerNorm):
            own.to(device=like.device, dtype=like.dtype).requires_grad_(False)
        head.bias = nn.Parameter(head.bias.detach().to(like), requires_grad=False)
        return head

    def forward(self, hidden: Tensor) -> Tensor:
        h = self.LayerNorm(self.act(self.dense(hidden)))
        return F.linear(h, self.word_embeddings.weight, self.bias)


class DiscriminatorHead(nn.Module):
    """ELECTRA's replaced-token-detection head: dense H → H, GELU, dense H → 1: [B, S, H] -> logits [B, S]."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.act = nn.GELU()
        self.out = nn.Linear(hidden_size, 1)

    def forward(self, hidden: Tensor) -> Tensor:
        return self.out(self.act(self.dense(hidden))).squeeze(-1)


# ---------------------------------------------------------------------------- pure steps
def select_positions(
    input_ids: Tensor,
    attention_mask: Tensor | None,
    special_ids: Iterable[int],
    mask_prob: float = 0.15,
    generator: torch.Generator | None = None,
    share_of: str = "tokens",
) -> Tensor:
    """Draw the positions to mask, uniformly without replacement (ELECTRA's dynamic masking).

    The candidates of a row are its real tokens (``attention_mask`` = 1) whose
    id is not in ``special_ids``. The row gets ``k = round(mask_prob · n)``
    positions, at least 1 and at most its number of candidates, where n is

    - ``share_of="tokens"``: its real tokens, computed in float32 as ELECTRA's
      TensorFlow code does (``pretrain_helpers.mask``); ELECTRA pretraining;
    - ``share_of="candidates"``: its candidates, computed in float64; the
      masked-LM loss of the zero-cost proxies (:mod:`tfnas.scoring.bert.mlm`).

    (The two precisions round some products differently, e.g. 510 · 0.15 is
    76.5 in float32 and just below it in float64; each use keeps its own.)

    Args:
        input_ids: [B, S] token ids.
        attention_mask: [B, S], 1 for real tokens, 0 for padding; None: all real.
        special_ids: ids never masked ([CLS], [SEP], [MASK], [PAD], ...).
        mask_prob: the masking rate (ELECTRA: 0.15).
        generator: RNG for the draw, which runs on its device (None: torch's
            global RNG on the device of ``input_ids``).
        share_of: ``"tokens"`` or ``"candidates"`` (above).

    Returns:
        Bool [B, S] on the device of ``input_ids``, True at the drawn positions.

    Raises:
        ValueError: ``mask_prob`` outside (0, 1), shapes that differ, or an unknown ``share_of``.
    """
    if not 0.0 < mask_prob < 1.0:
        raise ValueError(f"mask_prob must be in (0, 1), got {mask_prob}")
    if attention_mask is not None and input_ids.shape != attention_mask.shape:
        raise ValueError(f"input_ids {tuple(input_ids.shape)} and attention_mask {tuple(attention_mask.shape)} differ")
    if share_of not in ("tokens", "candidates"):
        raise ValueError(f"share_of must be 'tokens' or 'candidates', got {share_of!r}")
    device = generator.device if generator is not None else input_ids.device
    real = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    cand = real & ~torch.isin(input_ids, torch.tensor([int(i) for i in special_ids], device=input_ids.device))
    cand = cand.to(device)
    if share_of == "tokens":
        k = torch.round(real.sum(1).to(device).float() * mask_prob).long()
    else:
        k = (cand.sum(1).double() * mask_prob).round().long()
    k = torch.minimum(k.clamp(min=1), cand.sum(1))
    # Uniform draw without replacement: the k candidates with the largest random keys.
    keys = torch.rand(input_ids.shape, generator=generator, device=device).masked_fill(~cand, -1.0)
    rank = keys.argsort(dim=1, descending=True).argsort(dim=1)
    return ((rank < k[:, None]) & cand).to(input_ids.device)


def apply_mask(
    input_ids: Tensor,
    selected: Tensor,
    mask_token_id: int,
    mask_token_prob: float = 0.85,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The generator's input: ``[MASK]`` at each selected position with probability ``mask_token_prob``.

    The other selected positions keep their token (ELECTRA: 85 % / 15 %).

    Args:
        input_ids: [B, S]; selected: bool [B, S].

    Returns:
        [B, S] masked ids (a new tensor).
    """
    replace = selected & (torch.rand(input_ids.shape, generator=generator, device=input_ids.device) < mask_token_prob)
    return input_ids.masked_fill(replace, int(mask_token_id))


def sample_tokens(logits: Tensor, temperature: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
    """One token per row drawn from ``softmax(logits / temperature)``, without gradient: [N, V] -> [N] long.

    Inverse-CDF sampling (one uniform per row, a binary search in the
    cumulative probabilities): exact, and far cheaper on a 30 k vocabulary
    than ``torch.multinomial``, which draws an exponential per entry.
    """
    with torch.no_grad():
        if logits.shape[0] == 0:
            return torch.zeros(0, dtype=torch.long, device=logits.device)
        cdf = torch.softmax(logits.detach().float() / temperature, dim=-1).cumsum_(-1)
        u = torch.rand((logits.shape[0], 1), generator=generator, device=logits.device) * cdf[:, -1:]
        # right=True: token i is drawn when cdf[i-1] <= u < cdf[i], i.e. with probability p_i.
        return torch.searchsorted(cdf, u, right=True).squeeze(-1).clamp_(max=logits.shape[-1] - 1)


def corrupt(input_ids: Tensor, selected: Tensor, sampled: Tensor) -> Tensor:
    """The discriminator's input: the original ids with ``sampled`` written at the selected positions.

    Args:
        input_ids: [B, S] original ids.
        selected: bool [B, S].
        sampled: [N] tokens, N = ``selected.sum()``, in row-major order of the selected positions.

    Raises:
        ValueError: ``sampled`` has the wrong length.
    """
    if sampled.numel() != int(selected.sum()):
        raise ValueError(f"{sampled.numel()} sampled tokens for {int(selected.sum())} selected positions")
    out = input_ids.clone()
    out[selected] = sampled.to(out.dtype)
    return out


def replaced_token_labels(original_ids: Tensor, corrupted_ids: Tensor, selected: Tensor) -> Tensor:
    """Replaced-token-detection targets (ELECTRA ``_get_fake_data``): [B, S] float.

    1 where a selected position now holds a token different from the original;
    0 elsewhere, including selected positions whose sample equals the original.
    """
    return (selected & (corrupted_ids != original_ids)).float()


def discriminator_loss(logits: Tensor, labels: Tensor, attention_mask: Tensor) -> Tensor:
    """Sigmoid cross-entropy averaged over the real tokens: logits, labels, mask [B, S] -> scalar."""
    w = attention_mask.to(logits.dtype)
    losses = F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), reduction="none")
    return (losses * w).sum() / w.sum().clamp_min(1.0)


# ---------------------------------------------------------------------------- the model
@dataclass
class ElectraOutput:
    """Everything one ELECTRA step computed.

    Attributes:
        loss: ``gen_weight · mlm_loss + disc_weight · disc_loss`` (scalar).
        mlm_loss: generator cross-entropy over the selected positions (nats).
        disc_loss: discriminator sigmoid cross-entropy over real tokens.
        mlm_logits: [N, V] generator logits at the N selected positions.
        disc_logits: [B, S] discriminator logits.
        selected: bool [B, S] drawn positions.
        masked_ids: [B, S] generator input.
        corrupted_ids: [B, S] discriminator input.
        labels: [B, S] replaced-token labels (1 = replaced).
        targets: [N] original tokens at the selected positions.
    """

    loss: Tensor
    mlm_loss: Tensor
    disc_loss: Tensor
    mlm_logits: Tensor
    disc_logits: Tensor
    selected: Tensor
    masked_ids: Tensor
    corrupted_ids: Tensor
    labels: Tensor
    targets: Tensor


class ElectraPretrainingModel(nn.Module):
    """Generator + discriminator of ELECTRA around a FlexiBERT architecture.

    Args:
        config: the discriminator's :class:`FlexiBertConfig` (the architecture).
        special_ids: ids never masked ([CLS], [SEP], [MASK], [PAD]).
        mask_token_id: id of ``[MASK]``.
        generator_size: the generator's size fraction (0.25).
        mask_prob: masking rate (0.15).
        mask_token_prob: share of masked positions shown as ``[MASK]`` (0.85).
        gen_weight, disc_weight: loss weights (1 and 50).
        temperature: sampling temperature of the generator (1).

    Attributes:
        discriminator: the architecture (:class:`FlexiBertModel`); after
            pretraining it is what GLUE fine-tunes.
        generator: the small :class:`FlexiBertModel` whose ``embeddings`` is
            the discriminator's module.
        generator_head, discriminator_head: the heads (N(0, 0.02) weights, zero biases).
    """

    def __init__(
        self,
        config: FlexiBertConfig,
        special_ids: Iterable[int],
        mask_token_id: int,
        generator_size: float = 0.25,
        mask_prob: float = 0.15,
        mask_token_prob: float = 0.85,
        gen_weight: float = 1.0,
        disc_weight: float = 50.0,
        temperature: float = 1.0,
    ):
        super().__init__()
        if not 0.0 <= mask_token_prob <= 1.0:
            raise ValueError(f"mask_token_prob must be in [0, 1], got {mask_token_prob}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.special_ids = tuple(int(i) for i in special_ids)
        self.mask_token_id = int(mask_token_id)
        self.mask_prob, self.mask_token_prob = float(mask_prob), float(mask_token_prob)
        self.gen_weight, self.disc_weight, self.temperature = float(gen_weight), float(disc_weight), float(temperature)
        self.discriminator = FlexiBertModel(config)
        self.generator = FlexiBertModel(generator_config(config, generator_size))
        self.generator.embeddings = self.discriminator.embeddings  # tied embeddings (ELECTRA's shared scope)
        self.generator_head = GeneratorHead(
            self.generator.config.hidden_size, self.discriminator.embeddings.word_embeddings, config.layer_norm_eps
        )
        self.discriminator_head = DiscriminatorHead(config.hidden_size)
        for head in (self.generator_head, self.discriminator_head):
            for m in head.modules():
                if m is not self.discriminator.embeddings.word_embeddings:
                    self.discriminator._init_weights(m)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> ElectraOutput:
        """One replaced-token-detection step on a batch.

        Args:
            input_ids: [B, S] original ids.
            attention_mask: [B, S] (default all ones).
            token_type_ids: [B, S] (default all zeros).
            generator: RNG for masking and sampling (None: the global RNG);
                a fixed one makes evaluation losses comparable across steps.

        Returns:
            :class:`ElectraOutput`.
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        selected = select_positions(input_ids, attention_mask, self.special_ids, self.mask_prob, generator)
        masked = apply_mask(input_ids, selected, self.mask_token_id, self.mask_token_prob, generator)
        gen_hidden = self.generator(masked, attention_mask, token_type_ids).last_hidden_state
        mlm_logits = self.generator_head(gen_hidden[selected])  # only the drawn positions: [N, V]
        targets = input_ids[selected]
        mlm_loss = F.cross_entropy(mlm_logits.float(), targets)
        sampled = sample_tokens(mlm_logits, self.temperature, generator)
        corrupted = corrupt(input_ids, selected, sampled)
        labels = replaced_token_labels(input_ids, corrupted, selected)
        disc_hidden = self.discriminator(corrupted, attention_mask, token_type_ids).last_hidden_state
        disc_logits = self.discriminator_head(disc_hidden)
        disc_loss = discriminator_loss(disc_logits.float(), labels, attention_mask)
        loss = self.gen_weight * mlm_loss + self.disc_weight * disc_loss
        return ElectraOutput(loss, mlm_loss, disc_loss, mlm_logits, disc_logits, selected, masked, corrupted,
                             labels, targets)
