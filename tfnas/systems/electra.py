"""ELECTRA pretraining of a FlexiBERT discriminator (SPACES.md §2, "Ground-truth training").

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

Optimisation (ELECTRA's ``optimization.py``): AdamW (β = 0.9, 0.999, ε = 1e-6,
decoupled weight decay 0.01 on every weight but biases and LayerNorm
parameters), lr 5e-4, 10,000 linear warm-up steps then linear decay to 0 at
100,000 steps (``transformers.get_linear_schedule_with_warmup``), gradient
norm clipped at 1 (set on the Trainer). Two documented differences from the
TF code: torch's AdamW applies Adam's bias correction (ELECTRA's
``AdamWeightDecayOptimizer`` does not), and ELECTRA's schedule multiplies a
decay that starts at step 0 by the warm-up ramp (peak 0.9·lr at 10 k steps);
``schedule="electra"`` reproduces that shape instead.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tfnas.models.flexibert import FlexiBertConfig, FlexiBertModel

log = logging.getLogger("tfnas.train")

#: Learning-rate schedules of :func:`make_scheduler`.
SCHEDULES = ("linear", "electra")


class TrainingDiverged(RuntimeError):
    """A pretraining or fine-tuning loss became NaN or infinite."""


# ---------------------------------------------------------------------------- generator configuration
def generator_layers(layers: Iterable[Mapping[str, Any]], size: float = 0.25) -> list[dict]:
    """The generator's layer list: each layer of the discriminator, scaled down.

    Per layer (SPACES.md §2): heads ``max(1, h · size)`` (h/4 by default),
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
    attention_mask: Tensor,
    special_ids: Iterable[int],
    mask_prob: float = 0.15,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Draw the positions to mask (ELECTRA's dynamic masking, without replacement).

    Each row gets ``k = round(mask_prob · n)`` positions (n = its real tokens,
    ``attention_mask`` = 1), at least 1 and at most its number of candidates,
    drawn uniformly among the candidates: real tokens whose id is not in
    ``special_ids``.

    Args:
        input_ids: [B, S] token ids.
        attention_mask: [B, S], 1 for real tokens, 0 for padding.
        special_ids: ids never masked ([CLS], [SEP], [MASK], [PAD]).
        mask_prob: the masking rate (ELECTRA: 0.15).
        generator: RNG for the draw (None: torch's global RNG).

    Returns:
        Bool [B, S], True at the drawn positions.

    Raises:
        ValueError: ``mask_prob`` outside (0, 1) or shapes that differ.
    """
    if not 0.0 < mask_prob < 1.0:
        raise ValueError(f"mask_prob must be in (0, 1), got {mask_prob}")
    if input_ids.shape != attention_mask.shape:
        raise ValueError(f"input_ids {tuple(input_ids.shape)} and attention_mask {tuple(attention_mask.shape)} differ")
    real = attention_mask.bool()
    cand = real.clone()
    for sid in special_ids:
        cand &= input_ids != int(sid)
    k = torch.round(real.sum(1).float() * mask_prob).long().clamp(min=1)
    k = torch.minimum(k, cand.sum(1))
    # Uniform draw without replacement: the k candidates with the largest random keys.
    keys = torch.rand(input_ids.shape, generator=generator, device=input_ids.device)
    keys = keys.masked_fill(~cand, -1.0)
    rank = keys.argsort(dim=1, descending=True).argsort(dim=1)
    return (rank < k[:, None]) & cand


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


# ---------------------------------------------------------------------------- optimisation helpers
def no_decay(name: str) -> bool:
    """Whether parameter ``name`` is exempt from weight decay (biases and LayerNorm, as ELECTRA/BERT)."""
    return name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name


def decay_param_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: decayed weights and the exempt biases / LayerNorm parameters.

    Shared parameters (the tied embeddings) appear once.
    """
    decay, exempt = [], []
    for name, p in module.named_parameters():  # named_parameters de-duplicates shared tensors
        if p.requires_grad:
            (exempt if no_decay(name) else decay).append(p)
    return [
        {"params": decay, "weight_decay": float(weight_decay), "name": "decay"},
        {"params": exempt, "weight_decay": 0.0, "name": "no_decay"},
    ]


def make_scheduler(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, kind: str = "linear"):
    """The per-step learning-rate schedule.

    Args:
        optimizer: its groups' ``lr`` are the peak rates.
        warmup_steps: linear warm-up from 0.
        total_steps: the rate reaches 0 here.
        kind: ``"linear"`` — warm-up, then linear decay from the peak to 0
            (``transformers.get_linear_schedule_with_warmup``); ``"electra"`` —
            ELECTRA's ``(1 − t/T) · min(1, t/W)``.

    Raises:
        ValueError: unknown ``kind`` or non-positive ``total_steps``.
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if kind == "linear":
        from transformers import get_linear_schedule_with_warmup

        return get_linear_schedule_with_warmup(optimizer, int(warmup_steps), int(total_steps))
    if kind == "electra":
        w, t_max = max(int(warmup_steps), 1), int(total_steps)
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda t: max(0.0, 1.0 - t / t_max) * min(1.0, t / w)
        )
    raise ValueError(f"unknown schedule {kind!r}; expected one of {SCHEDULES}")


def rng_state() -> dict[str, Any]:
    """The global RNG states (torch, CUDA, NumPy, Python), for checkpoints."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_all(seed: int) -> None:
    """Seed torch, NumPy and Python."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ---------------------------------------------------------------------------- Lightning system
class ElectraPretrainingSystem(pl.LightningModule):
    """Trains an :class:`ElectraPretrainingModel` with ELECTRA's recipe.

    Batches are dicts with ``input_ids`` [B, S] and optionally
    ``attention_mask`` and ``token_type_ids``
    (:class:`tfnas.data.pretraining.PretrainingDataModule`).

    Logged (every ``log_every_n_steps`` of the Trainer): ``pretrain/loss``,
    ``pretrain/mlm_loss`` (generator), ``pretrain/disc_loss``,
    ``pretrain/mlm_acc`` (argmax accuracy at the masked positions),
    ``pretrain/disc_acc``, ``pretrain/replaced`` (share of real tokens
    replaced), ``pretrain/lr``. When the datamodule has a validation loader,
    the same losses on it with a fixed masking/sampling seed as ``pval/...``,
    also once before training (step 0).

    Args:
        model: the generator + discriminator.
        lr: peak learning rate (5e-4).
        weight_decay: decoupled weight decay (0.01).
        warmup_steps: linear warm-up (10,000).
        max_steps: total optimisation steps (100,000); the schedule ends here.
        adam_eps, adam_betas: AdamW settings (1e-6, (0.9, 0.999)).
        schedule: ``"linear"`` or ``"electra"`` (see :func:`make_scheduler`).
        seed: seeds torch, NumPy and Python when a fresh run starts training
            (after the training-free scores, whatever RNG they used).
        eval_seed: seed of the validation masking and sampling.
        history_every: append the mean training losses of each window of
            this many steps to :attr:`history`.

    Attributes:
        model: the discriminator (what :class:`~tfnas.callbacks.TrainingFreeScores` scores).
        history: ``{"step", "loss", "mlm_loss", "disc_loss", "mlm_acc", "disc_acc"}``
            window means of the training losses.
        eval_history: ``{"step", "loss", "mlm_loss", "disc_loss", ...}`` per validation.
    """

    def __init__(
        self,
        model: ElectraPretrainingModel,
        lr: float = 5e-4,
        weight_decay: float = 0.01,
        warmup_steps: int = 10_000,
        max_steps: int = 100_000,
        adam_eps: float = 1e-6,
        adam_betas: tuple[float, float] = (0.9, 0.999),
        schedule: str = "linear",
        seed: int = 0,
        eval_seed: int = 1234,
        history_every: int = 50,
    ):
        super().__init__()
        if lr <= 0 or max_steps < 1 or warmup_steps < 0:
            raise ValueError(f"need lr > 0, max_steps >= 1, warmup_steps >= 0; got {lr}, {max_steps}, {warmup_steps}")
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r}; expected one of {SCHEDULES}")
        self.electra = model
        self.lr, self.weight_decay = float(lr), float(weight_decay)
        self.warmup_steps, self.max_steps = int(warmup_steps), int(max_steps)
        self.adam_eps, self.adam_betas = float(adam_eps), tuple(float(b) for b in adam_betas)
        self.schedule, self.seed, self.eval_seed = schedule, int(seed), int(eval_seed)
        self.history_every = max(1, int(history_every))
        self.history: list[dict[str, float]] = []
        self.eval_history: list[dict[str, float]] = []
        self._window: list[list[float]] = []
        self._eval_acc: list[list[float]] = []
        self._restored_rng: dict[str, Any] | None = None
        self._t0 = time.perf_counter()

    @property
    def model(self) -> FlexiBertModel:
        """The discriminator (the architecture being trained)."""
        return self.electra.discriminator

    # -------------------------------------------------------------- optimisation
    def configure_optimizers(self):
        opt = torch.optim.AdamW(
            decay_param_groups(self.electra, self.weight_decay), lr=self.lr, betas=self.adam_betas, eps=self.adam_eps
        )
        sched = make_scheduler(opt, self.warmup_steps, self.max_steps, self.schedule)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "frequency": 1}}

    def on_train_start(self) -> None:
        if self._restored_rng is not None:  # resumed: continue the interrupted run's random stream
            set_rng_state(self._restored_rng)
            self._restored_rng = None
            return
        if self.global_step == 0 and not self.eval_history:
            self._evaluate_now()
        seed_all(self.seed)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        """One ELECTRA step.

        Raises:
            TrainingDiverged: the loss is NaN or infinite.
        """
        out = self.electra(batch["input_ids"], batch.get("attention_mask"), batch.get("token_type_ids"))
        if not torch.isfinite(out.loss):
            raise TrainingDiverged(
                f"pretraining loss is {out.loss.item()} at step {self.global_step} "
                f"(mlm {out.mlm_loss.item()}, disc {out.disc_loss.item()})"
            )
        stats = _step_stats(out, batch.get("attention_mask"))
        self.log_dict({f"pretrain/{k}": v for k, v in stats.items()}, on_step=True, on_epoch=False)
        self.log("pretrain/lr", self.lr_schedulers().get_last_lr()[0], on_step=True, on_epoch=False)
        self._window.append([stats[k] for k in _STAT_KEYS])
        if len(self._window) >= self.history_every:
            self._flush_window()
        return out.loss

    def _flush_window(self) -> None:
        if not self._window:
            return
        means = np.mean(np.asarray(self._window, dtype=np.float64), axis=0)
        row = {"step": int(self.global_step) + 1, **{k: float(v) for k, v in zip(_STAT_KEYS, means)},
               "seconds": time.perf_counter() - self._t0}
        self.history.append(row)
        self._window = []
        log.info(
            f"pretrain step {row['step']}: loss={row['loss']:.4f} mlm={row['mlm_loss']:.4f} "
            f"disc={row['disc_loss']:.4f} disc_acc={row['disc_acc']:.3f}"
        )

    def on_train_end(self) -> None:
        self._flush_window()

    # -------------------------------------------------------------- evaluation
    def on_validation_epoch_start(self) -> None:
        self._eval_acc = []
        self._eval_gen = torch.Generator(device=self.device).manual_seed(self.eval_seed)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        out = self.electra(batch["input_ids"], batch.get("attention_mask"), batch.get("token_type_ids"),
                           generator=self._eval_gen)
        stats = _step_stats(out, batch.get("attention_mask"))
        self._eval_acc.append([stats[k] for k in _STAT_KEYS])

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking or not self._eval_acc:
            return
        self._record_eval(int(self.global_step))

    def _record_eval(self, step: int) -> None:
        means = np.mean(np.asarray(self._eval_acc, dtype=np.float64), axis=0)
        row = {"step": step, **{k: float(v) for k, v in zip(_STAT_KEYS, means)}}
        self.eval_history.append(row)
        for lg in self.trainer.loggers:
            lg.log_metrics({f"pval/{k}": row[k] for k in _STAT_KEYS}, step=step)
        log.info(f"pretrain eval at step {step}: mlm={row['mlm_loss']:.4f} disc={row['disc_loss']:.4f}")

    @torch.no_grad()
    def _evaluate_now(self) -> None:
        """Validation losses of the model as it is (before training), honouring ``limit_val_batches``."""
        dm = self.trainer.datamodule
        if dm is None or not getattr(dm, "has_validation", False):
            return
        loader = dm.val_dataloader()
        limit = self.trainer.limit_val_batches
        was = self.electra.training
        self.electra.eval()
        self.on_validation_epoch_start()
        try:
            for k, batch in enumerate(loader):
                if isinstance(limit, int) and k >= limit:
                    break
                batch = {key: v.to(self.device) for key, v in batch.items()}
                self.validation_step(batch, k)
        finally:
            self.electra.train(was)
        if self._eval_acc:
            self._record_eval(0)

    # -------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["tfnas"] = {
            "history": list(self.history),
            "eval_history": list(self.eval_history),
            "window": list(self._window),
            "rng": rng_state(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("tfnas")
        if state is None:
            raise KeyError("not a tfnas ELECTRA checkpoint: the 'tfnas' entry (history, RNG states) is missing")
        self.history = list(state["history"])
        self.eval_history = list(state["eval_history"])
        self._window = list(state.get("window", []))
        self._restored_rng = state["rng"]


_STAT_KEYS = ("loss", "mlm_loss", "disc_loss", "mlm_acc", "disc_acc", "replaced")


def _step_stats(out: ElectraOutput, attention_mask: Tensor | None) -> dict[str, float]:
    with torch.no_grad():
        real = torch.ones_like(out.labels, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
        pred = out.disc_logits > 0
        disc_acc = (pred == out.labels.bool())[real].float().mean()
        hits = (out.mlm_logits.argmax(-1) == out.targets).float()
        mlm_acc = hits.mean() if hits.numel() else torch.tensor(math.nan)
        return {
            "loss": float(out.loss),
            "mlm_loss": float(out.mlm_loss),
            "disc_loss": float(out.disc_loss),
            "mlm_acc": float(mlm_acc),
            "disc_acc": float(disc_acc),
            "replaced": float(out.labels[real].mean()),
        }
