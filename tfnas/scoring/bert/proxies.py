"""The zero-cost proxy passes on NAS-Bench-BERT encoders (:mod:`tfnas.scoring.proxies` defines the proxies).

x, the input of a proxy, is :meth:`FlexiBertModel.embed`'s output, after the
E→H projection, [B, S, H]. The loss is the masked-LM loss of a fresh ELECTRA
generator head (:meth:`tfnas.models.electra.GeneratorHead.fresh`) at the tokens
masked by :mod:`tfnas.scoring.bert.mlm`. Options: ``mask_token_id``
(default 103, BERT-uncased [MASK]), ``special_token_ids`` (default 0, 100,
101, 102, 103: [PAD] [UNK] [CLS] [SEP] [MASK]), ``mask_prob`` (0.15).

Proxy weights θ: the weight of every ``nn.Linear``, ``nn.Conv1d`` (DSC's
depthwise and pointwise key convolutions) and ``nn.Embedding`` (word,
position, token type) of the encoder; not biases, LayerNorm parameters or the
temporary head. ``proxy_codes`` runs its own no-grad forward (the loss
forward sees masked tokens).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tfnas.models.electra import GeneratorHead
from tfnas.scoring.api import ScoringContext, UndefinedScore, register_pass
from tfnas.scoring.bert.mlm import MASK_PROB, MASK_TOKEN_ID, SPECIAL_TOKEN_IDS, mask_tokens
from tfnas.scoring.bert.passes import chunks, context_micro_batch, encoder_layers
from tfnas.scoring.proxies import (
    CodesOutputs,
    LossBackward,
    LossOutputs,
    SynflowOutputs,
    ZenOutputs,
    layer_norm_zen,
    register_proxies,
    seeded_generator,
    synflow_copy,
    synflow_log_score,
)
from tfnas.scoring.scores import NaswotKernel


def proxy_weights(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """(name, weight) of every ``nn.Linear``, ``nn.Conv1d`` and ``nn.Embedding`` of the model, in module order."""
    encoder_layers(model)
    return [
        (f"{n}.weight", m.weight)
        for n, m in model.named_modules()
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Embedding))
    ]


def _inputs(ctx: ScoringContext) -> tuple[Tensor, Tensor | None, Tensor | None]:
    model = ctx.model
    device = next(model.parameters()).device
    batch = ctx.batch
    if not isinstance(batch, dict) or "input_ids" not in batch:
        raise ValueError("BERT proxies need a batch dict with 'input_ids'")
    ids = batch["input_ids"].to(device)
    attn = batch.get("attention_mask")
    tt = batch.get("token_type_ids")
    return ids, None if attn is None else attn.to(device), None if tt is None else tt.to(device)


def _bert_loss(ctx: ScoringContext, hvp: bool) -> LossOutputs:
    model = ctx.model
    encoder_layers(model)
    ids, attn, tt = _inputs(ctx)
    cfg = model.config
    opts = ctx.options
    mask_id = int(opts.get("mask_token_id", MASK_TOKEN_ID))
    if not 0 <= mask_id < cfg.vocab_size:
        raise ValueError(f"mask_token_id={mask_id} is outside the vocabulary (size {cfg.vocab_size})")
    masked, chosen = mask_tokens(
        ids, attn, ctx.seed, mask_id, tuple(opts.get("special_token_ids", SPECIAL_TOKEN_IDS)),
        float(opts.get("mask_prob", MASK_PROB)),
    )
    head = GeneratorHead.fresh(
        cfg.hidden_size, model.embeddings.word_embeddings, cfg.layer_norm_eps, cfg.initializer_range,
        seeded_generator(ctx.seed),
    )
    want_fisher = ctx.wants("fisher")
    acts: list[tuple[str, Tensor, int]] = []  # the current chunk's linear-op outputs, for Fisher
    handles = []
    if want_fisher:
        for name, mod in model.named_modules():
            if isinstance(mod, (nn.Linear, nn.Conv1d)):
                ch = 2 if isinstance(mod, nn.Linear) else 1  # Linear [B, S, C]; Conv1d [B, C, S]

                def hook(m, i, o, name=name, ch=ch):
                    acts.append((name, o, ch if o.dim() == 3 else o.dim() - 1))

                handles.append(mod.register_forward_hook(hook))
    n_masked = int(chosen.sum())
    backward = LossBackward(proxy_weights(model), ids.shape[0], want_fisher, hvp)
    try:
        for part in chunks(ids.shape[0], context_micro_batch(ctx)):
            acts.clear()
            x = model.embed(masked[part], None if tt is None else tt[part])
            out = model.encode(x, None if ctx.paper_compat or attn is None else attn[part]).last_hidden_state
            picked = chosen[part]
            loss = F.cross_entropy(head(out[picked]), ids[part][picked], reduction="sum") / n_masked
            backward.add(loss, list(acts) if want_fisher else None, part.stop - part.start)
    finally:
        for h in handles:
            h.remove()
    return backward.outputs()


@register_pass("bert", "proxy_loss", served_by=("proxy_loss_hvp",), captures=("fisher",))
def bert_loss_pass(ctx: ScoringContext) -> LossOutputs:
    """Masked-LM loss forward (fresh ELECTRA generator head) and one backward (BERT).

    x = ``model.embed(masked ids)`` [B, S, H]; the encoder runs with the
    attention mask (none in ``paper_compat``); L = mean cross-entropy of the
    head's logits [n_masked, V] against the original tokens; θ = every
    Linear / Conv1d / Embedding weight (the head excluded). The masks are drawn
    for the whole batch; the forward and backward then run in chunks of
    sequences as the ``grad`` pass does (option ``micro_batch_tokens``,
    :func:`~tfnas.scoring.bert.passes.context_micro_batch`), each chunk's token
    losses divided by the whole batch's masked count
    (:class:`~tfnas.scoring.proxies.LossBackward`), so one chunk's graph is
    held at a time.

    Raises:
        TypeError: not a FlexiBERT model.
        ValueError: no ``input_ids``, or ``mask_token_id`` outside the vocabulary.
        UndefinedScore: no maskable token in the batch.
    """
    return _bert_loss(ctx, hvp=False)


@register_pass("bert", "proxy_loss_hvp", captures=("fisher",))
def bert_loss_hvp_pass(ctx: ScoringContext) -> LossOutputs:
    """``proxy_loss`` with a create_graph backward and GraSP's Hessian-gradient product (BERT).

    Raises:
        TypeError, ValueError, UndefinedScore: as :func:`bert_loss_pass`.
    """
    return _bert_loss(ctx, hvp=True)


@register_pass("bert", "proxy_codes")
def bert_codes_pass(ctx: ScoringContext) -> CodesOutputs:
    """NASWOT codes of every feed-forward GELU call on the clean batch (BERT).

    Samples are the B sequences; a sequence's code is 1[z > 0] (⇔ GELU(z) > 0)
    of every unit of every GELU call at every real token position, so the
    code has Σ_calls S·I bits; padding positions count for neither sample.
    """
    model = ctx.model
    layers = encoder_layers(model)
    ids, attn, tt = _inputs(ctx)
    codes = NaswotKernel()
    padded = attn is not None and not bool(attn.all())  # without padding, one product per call (NaswotKernel)

    def hook(m, i, o):
        valid = attn.bool()[:, :, None].expand_as(o) if padded else None
        codes.add((o > 0).reshape(o.shape[0], -1), None if valid is None else valid.reshape(o.shape[0], -1))

    handles = [layer.feed_forward.act.register_forward_hook(hook) for layer in layers]
    try:
        with torch.no_grad():
            model(input_ids=ids, attention_mask=None if ctx.paper_compat else attn, token_type_ids=tt)
    finally:
        for h in handles:
            h.remove()
    if codes.kernel is None:
        raise UndefinedScore("naswot: no feed-forward activation was called")
    return CodesOutputs(codes.kernel, codes.bits)


@register_pass("bert", "proxy_synflow")
def bert_synflow_pass(ctx: ScoringContext) -> SynflowOutputs:
    """SynFlow (Tanaka et al. 2020), data-free, on the encoder.

    θ → |θ| in float64 on a copy; input x = ones [1, S, H] at the embedding
    output (S = the scoring batch's length), no attention mask; R = Σ of
    ``last_hidden_state``. LayerNorm on a constant input gives 0 (and would
    zero every score), so, as Abdelfattah et al. 2021 run SynFlow without
    batch norm, each LayerNorm is replaced by its affine part |γ| x + |β|
    (the identity at initialisation). Score ln Σ_θ |θ ⊙ ∂R/∂θ| over the proxy
    weights; the embedding tables and ``embeddings_project`` lie upstream of x
    and add nothing. The backward seed is rescaled by an exact power of 2.
    """
    encoder_layers(ctx.model)
    ids, _, _ = _inputs(ctx)
    twin = synflow_copy(ctx.model)
    theta = [w.requires_grad_(True) for _, w in proxy_weights(twin)]
    ones = torch.ones(1, ids.shape[1], twin.config.hidden_size, dtype=torch.float64, device=ids.device)
    return synflow_log_score(twin.encode(ones, None).last_hidden_state, theta)


@register_pass("bert", "proxy_zen")
def bert_zen_pass(ctx: ScoringContext) -> ZenOutputs:
    """Zen-score's forwards (Lin et al. 2021) on the encoder: x, ε ~ N(0, 1) [B, S, H] at the embedding output.

    f = ``last_hidden_state`` (no mask: the Gaussian inputs have no padding);
    Δ = mean over samples of Σ_{s,h} |f(x) − f(x + 0.01 ε)|. Zen's batch-norm
    term Σ ln √(mean running variance) becomes, for LayerNorm, Σ over the
    encoder's LayerNorms of ln √(mean over tokens of the variance of the
    LayerNorm's input over features), measured in the forward of f(x)
    (:func:`~tfnas.scoring.proxies.layer_norm_zen`).
    """
    model = ctx.model
    encoder_layers(model)
    ids, _, _ = _inputs(ctx)
    shape = (ids.shape[0], ids.shape[1], model.config.hidden_size)
    dtype = next(model.parameters()).dtype
    return layer_norm_zen(lambda x: model.encode(x, None).last_hidden_state, model.encoder, shape, dtype, ids.device,
                          ctx.seed)  # fmt: skip


register_proxies("bert")
