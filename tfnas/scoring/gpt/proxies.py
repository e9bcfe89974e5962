"""The zero-cost proxy passes on LTS GPT-2 decoders (:mod:`tfnas.scoring.proxies` defines the proxies).

x, the input of a proxy, is the embedding output (tokens + positions)
[B, S, D]. The loss is the decoder's own language-model loss: the mean
next-token negative log-likelihood through its tied adaptive softmax over the
B·(S−1) predicted tokens of the scoring batch.

Proxy weights θ: every parameter with two or more dimensions: the adaptive
embedding's tables and projections, the position table, every linear weight
of the blocks, and the softmax's cluster weights and untied projections (and
its tables when untied); not biases or LayerNorm parameters. Fisher's linear
ops are the blocks' linears (``qkv``, attention ``proj``, ``fc``, MLP
``proj``). NASWOT's units are the MLP activations.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from tfnas.scoring.api import ScoringContext, UndefinedScore, register_pass
from tfnas.scoring.gpt.passes import decoder, input_ids
from tfnas.scoring.proxies import (
    CodesOutputs,
    LossBackward,
    LossOutputs,
    SynflowOutputs,
    ZenOutputs,
    layer_norm_zen,
    register_proxies,
    synflow_copy,
    synflow_log_score,
)
from tfnas.scoring.scores import NaswotKernel


def proxy_weights(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """(name, parameter) of every parameter of two or more dimensions, in registration order (tied ones once)."""
    return [(n, p) for n, p in decoder(model).named_parameters() if p.dim() >= 2]


def _loss(ctx: ScoringContext, hvp: bool) -> LossOutputs:
    model = decoder(ctx.model)
    ids = input_ids(ctx)
    if ids.shape[1] < 2:
        raise UndefinedScore("the scoring batch has sequences of one token: nothing to predict")
    named = proxy_weights(model)
    want_fisher = ctx.wants("fisher")
    acts: list[tuple[str, Tensor, int]] = []
    handles = []
    if want_fisher:
        for name, mod in model.transformer.h.named_modules():
            if isinstance(mod, nn.Linear):
                handles.append(mod.register_forward_hook(lambda m, i, o, name=name: acts.append((f"h.{name}", o, 2))))
    try:
        hidden = model.transformer(ids)["last_hidden_state"]
    finally:
        for h in handles:
            h.remove()
    loss = model.nll(hidden[:, :-1], ids[:, 1:]).mean()
    backward = LossBackward(named, ids.shape[0], want_fisher, hvp)
    backward.add(loss, acts if want_fisher else None)
    return backward.outputs()


@register_pass("gpt", "proxy_loss", served_by=("proxy_loss_hvp",), captures=("fisher",))
def gpt_loss_pass(ctx: ScoringContext) -> LossOutputs:
    """Next-token loss forward and one backward (module docstring for L and θ).

    Raises:
        TypeError: not an LTS GPT-2 decoder.
        ValueError: no ``input_ids``.
        UndefinedScore: sequences of one token.
    """
    return _loss(ctx, hvp=False)


@register_pass("gpt", "proxy_loss_hvp", captures=("fisher",))
def gpt_loss_hvp_pass(ctx: ScoringContext) -> LossOutputs:
    """``proxy_loss`` with a create_graph backward and GraSP's Hessian-gradient product."""
    return _loss(ctx, hvp=True)


@register_pass("gpt", "proxy_codes")
def gpt_codes_pass(ctx: ScoringContext) -> CodesOutputs:
    """NASWOT codes of every block's MLP activation on the scoring batch (no grad).

    Samples are the B sequences; a sequence's code is 1[z > 0] (⇔ GELU(z) > 0)
    of every unit of every block's MLP at every position: Σ_blocks S·F bits.
    """
    model = decoder(ctx.model)
    ids = input_ids(ctx)
    codes = NaswotKernel()

    def hook(m, i, o):
        codes.add((o > 0).reshape(o.shape[0], -1))

    handles = [block.mlp.act.register_forward_hook(hook) for block in model.transformer.h]
    try:
        with torch.no_grad():
            model.transformer(ids)
    finally:
        for h in handles:
            h.remove()
    if codes.kernel is None:
        raise UndefinedScore("naswot: the decoder has no block")
    return CodesOutputs(codes.kernel, codes.bits)


@register_pass("gpt", "proxy_synflow")
def gpt_synflow_pass(ctx: ScoringContext) -> SynflowOutputs:
    """SynFlow (Tanaka et al. 2020), data-free, on the decoder.

    θ → |θ| in float64 on a copy whose LayerNorms are their affine part
    (:func:`~tfnas.scoring.proxies.synflow_copy`); input x = ones [1, S, D] at
    the embedding output (S = the scoring batch's length), the causal mask on;
    R = Σ of the decoder's output after the final LayerNorm (as NAS-Bench-BERT's
    ``last_hidden_state``). Score ln Σ_θ |θ ⊙ ∂R/∂θ| over the proxy weights;
    the embedding tables and the softmax lie off the path from x to R and add nothing.
    """
    ids = input_ids(ctx)
    twin = synflow_copy(decoder(ctx.model))
    theta = [w.requires_grad_(True) for _, w in proxy_weights(twin)]
    ones = torch.ones(1, ids.shape[1], twin.config.d_model, dtype=torch.float64, device=ids.device)
    return synflow_log_score(twin.transformer.decode(ones)["last_hidden_state"], theta)


@register_pass("gpt", "proxy_zen")
def gpt_zen_pass(ctx: ScoringContext) -> ZenOutputs:
    """Zen-score's forwards (Lin et al. 2021): x, ε ~ N(0, 1) [B, S, D] at the embedding output.

    f = the decoder's output after the final LayerNorm; Δ = mean over
    samples of Σ_{s,d} |f(x) − f(x + 0.01 ε)|; the batch-norm term becomes
    Σ over every LayerNorm (each block's two and the final one) of ln √(mean
    over tokens of the variance of its input over features), measured in the
    forward of f(x), as for NAS-Bench-BERT (:func:`~tfnas.scoring.proxies.layer_norm_zen`).
    """
    model = decoder(ctx.model)
    ids = input_ids(ctx)
    body = model.transformer
    shape = (ids.shape[0], ids.shape[1], model.config.d_model)
    dtype = next(model.parameters()).dtype
    return layer_norm_zen(lambda x: body.decode(x)["last_hidden_state"], body, shape, dtype, ids.device, ctx.seed)


register_proxies("gpt")
