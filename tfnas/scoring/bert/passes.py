"""The BERT family's one pass for the paper's metrics: forward, then backward of Σ o (docs/METRICS.md, "BERT space").

``o = model(**batch).last_hidden_state`` [B, S, H]; ``o.backward(ones_like(o))``.
Forward hooks capture, as they happen and reduced where possible so that a
128 × 512 batch stays cheap:

* the first sequence's output of every call of each feed-forward GELU [S, I];
* for each confidence projection (query, key, value, WMA's extra matrix, LT's
  input projection) the scalar mean over (batch, features) of the max over
  sequence positions of its output [B, S, out];
* for each attention softmax [B, heads, S, S] and each LT transform
  [B, heads, S, d] (softmax over d taken in the hook) the scalar mean of the
  max over the head axis.

After the backward, the pass keeps (W, ∂W) of the linears the weight metrics
read, and ∂ of the position-embedding table, then clears the model's grads.

Which linears play which role (attribute names of
:mod:`tfnas.models.flexibert` blocks):

=========  ==========================  ================================  ===========================
block      token-mixing linears        head-importance projections       confidence projections
=========  ==========================  ================================  ===========================
SA         query key value [wma] dense query key value [wma]             query key value [wma]
DSC        query key value kernel      query key value conv_value        query key value
           conv_value dense
LT         input_projection            input_projection                  input_projection
=========  ==========================  ================================  ===========================

Compat (``paper_compat``): no attention mask is passed, and head importance
uses the paper's rule, "output size ≥ 128 among the operation's own linears"
(every mixing linear except ``dense``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from tfnas.scoring.api import ScoringContext, register_pass

#: Output-size threshold of the paper's head-importance rule (compat).
COMPAT_IMPORTANCE_MIN_OUT = 128

_IMPORTANCE = {
    "SA": ("query", "key", "value", "wma"),
    "DSC": ("query", "key", "value", "conv_value"),
    "LT": ("input_projection",),
}
_CONFIDENCE = {
    "SA": ("query", "key", "value", "wma"),
    "DSC": ("query", "key", "value"),
    "LT": ("input_projection",),
}

WeightGrad = tuple[str, torch.Tensor, torch.Tensor]


@dataclass
class BertGradOutputs:
    """What the ``grad`` pass leaves for the BERT metrics.

    Attributes:
        mixing: (name, W, ∂W) of every linear of every token-mixing block.
        feed_forward: (name, W, ∂W) of every feed-forward linear (dense in, extra, dense out).
        importance: (name, W, ∂W) of the head-importance projections (default
            list, or the compat rule).
        activations: first-sequence GELU outputs [S, I], one per call, in call order.
        confidence: per confidence projection, mean over (batch, features) of max over positions.
        softmax_confidence: per attention softmax / LT transform, mean of the max over heads.
        position_grad: ∂ of the position-embedding weight [max_positions, E].
        names: ``{"confidence": [...], "softmax_confidence": [...]}``, the module
            of each entry of those lists, in the order the forward reached them.
        hidden_states: each layer's output at the real tokens [tokens, H]
            (capture ``"hidden_states"``); None unless asked.
    """

    mixing: list[WeightGrad]
    feed_forward: list[WeightGrad]
    importance: list[WeightGrad]
    activations: list[torch.Tensor]
    confidence: list[float]
    softmax_confidence: list[float]
    position_grad: torch.Tensor
    names: dict[str, list[str]] = field(default_factory=dict)
    hidden_states: list[torch.Tensor] | None = None


def _linears(block: nn.Module) -> list[tuple[str, nn.Linear]]:
    return [(n, m) for n, m in block.named_modules() if isinstance(m, nn.Linear)]


def encoder_layers(model: nn.Module) -> list[nn.Module]:
    """The encoder's layers [FlexiBertLayer].

    Raises:
        TypeError: the model is not a :class:`~tfnas.models.flexibert.FlexiBertModel`.
    """
    try:
        return list(model.encoder.layer)
    except AttributeError:
        raise TypeError(f"BERT passes need a FlexiBertModel (encoder.layer), got {type(model).__name__}") from None


def importance_linears(block: nn.Module, paper_compat: bool) -> list[tuple[str, nn.Linear]]:
    """The head-importance projections of a token-mixing block (see the module table)."""
    if paper_compat:
        return [(n, m) for n, m in _linears(block) if n != "dense" and m.out_features >= COMPAT_IMPORTANCE_MIN_OUT]
    return [(n, getattr(block, n)) for n in _IMPORTANCE[block.operation_type] if getattr(block, n, None) is not None]


def confidence_linears(block: nn.Module) -> list[tuple[str, nn.Linear]]:
    """The projections whose outputs feed head confidence (see the module table)."""
    return [(n, getattr(block, n)) for n in _CONFIDENCE[block.operation_type] if getattr(block, n, None) is not None]


def collect(model: nn.Module, batch: dict, paper_compat: bool = False, hidden_states: bool = False) -> BertGradOutputs:
    """Run the forward and the backward of Σ o once and gather the metrics' inputs.

    Args:
        model: a :class:`~tfnas.models.flexibert.FlexiBertModel` (its grads are cleared first and after).
        batch: ``input_ids`` [B, S], optionally ``attention_mask`` and ``token_type_ids`` [B, S].
        paper_compat: pass no attention mask, and use the paper's head-importance rule.
        hidden_states: also keep each layer's output at the real tokens (``attention_mask`` 1).

    Returns:
        The :class:`BertGradOutputs`.

    Raises:
        TypeError: not a FlexiBERT model.
        RuntimeError: a parameter the metrics read received no gradient.
    """
    layers = encoder_layers(model)
    device = next(model.parameters()).device
    activations: list[torch.Tensor] = []
    # Reductions stay 0-d tensors until the end: no device sync inside the forward.
    confidence: list[tuple[str, torch.Tensor]] = []
    softmax_conf: list[tuple[str, torch.Tensor]] = []
    handles = []

    def keep_first_sequence(module, inputs, out):
        activations.append(out[0].detach().clone())

    def projection_confidence(name):
        def hook(module, inputs, out):
            # [B, S, out]: max over positions, mean over batch and features.
            confidence.append((name, out.detach().amax(dim=1).mean(dtype=torch.float64)))

        return hook

    def attention_confidence(name):
        def hook(module, inputs, out):
            # [B, heads, S, S]: max over the head axis (as the paper did), mean of the rest.
            softmax_conf.append((name, out.detach().amax(dim=1).mean(dtype=torch.float64)))

        return hook

    def transform_confidence(name):
        def hook(module, inputs, out):
            # LT: softmax of the transform over the head dimension [B, heads, S, d], then as attention.
            value = torch.softmax(out.detach(), dim=-1).amax(dim=1).mean(dtype=torch.float64)
            softmax_conf.append((name, value))

        return hook

    try:
        for i, layer in enumerate(layers):
            block = layer.operation
            handles.append(layer.feed_forward.act.register_forward_hook(keep_first_sequence))
            for n, lin in confidence_linears(block):
                handles.append(lin.register_forward_hook(projection_confidence(f"layer{i}.operation.{n}")))
            if block.operation_type == "LT":
                hook = transform_confidence(f"layer{i}.operation.transform")
                handles.append(block.transform.register_forward_hook(hook))
            else:
                handles.append(block.softmax.register_forward_hook(attention_confidence(f"layer{i}.operation.softmax")))

        inputs = {"input_ids": batch["input_ids"].to(device)}
        if batch.get("token_type_ids") is not None:
            inputs["token_type_ids"] = batch["token_type_ids"].to(device)
        if not paper_compat and batch.get("attention_mask") is not None:
            inputs["attention_mask"] = batch["attention_mask"].to(device)
        model.zero_grad(set_to_none=True)
        result = model(**inputs, output_hidden_states=hidden_states)
        out = result.last_hidden_state
        out.backward(torch.ones_like(out))
    finally:
        for h in handles:
            h.remove()

    def weight_grads(pairs) -> list[WeightGrad]:
        res = []
        for n, lin in pairs:
            if lin.weight.grad is None:
                raise RuntimeError(f"{n}.weight received no gradient (frozen or unused parameter)")
            res.append((n, lin.weight.detach(), lin.weight.grad.detach()))
        return res

    mixing, ffn, importance = [], [], []
    for i, layer in enumerate(layers):
        block = layer.operation
        mixing += weight_grads((f"layer{i}.operation.{n}", m) for n, m in _linears(block))
        ffn += weight_grads((f"layer{i}.feed_forward.ffn.{j}", m) for j, m in enumerate(layer.feed_forward.ffn))
        importance += weight_grads((f"layer{i}.operation.{n}", m) for n, m in importance_linears(block, paper_compat))
    pos = model.embeddings.position_embeddings.weight
    if pos.grad is None:
        raise RuntimeError("the position-embedding weight received no gradient")
    position_grad = pos.grad.detach()
    states = None
    if hidden_states:
        real = batch.get("attention_mask")
        real = None if real is None else real.to(device).bool()
        states = [h.detach() if real is None else h.detach()[real] for h in result.hidden_states[1:]]
    # The tensors above are kept by reference; the model itself is left without grads.
    model.zero_grad(set_to_none=True)
    return BertGradOutputs(
        mixing,
        ffn,
        importance,
        activations,
        [v.item() for _, v in confidence],
        [v.item() for _, v in softmax_conf],
        position_grad,
        {"confidence": [n for n, _ in confidence], "softmax_confidence": [n for n, _ in softmax_conf]},
        states,
    )


@register_pass("bert", "grad", captures=("hidden_states",))
def grad_pass(ctx: ScoringContext) -> BertGradOutputs:
    """Engine pass ``("bert", "grad")``: :func:`collect` on the context's model and batch."""
    return collect(ctx.model, ctx.batch, ctx.paper_compat, hidden_states=ctx.wants("hidden_states"))
