"""The GPT family's pass for the transformer metrics: forward, then backward of Σ o.

The model is an :class:`~tfnas.models.lts_gpt2.LtsGpt2LMHeadModel`; the batch
``{"input_ids": [B, S], ...}`` of :class:`~tfnas.data.causal_text.CausalTextScoringData`.
e = the embedding output (tokens + positions) [B, S, D]; the blocks run on it
with the causal mask; o = the last block's output, the residual stream
*before* the final LayerNorm [B, S, D]; then ``o.backward(ones_like(o))``.

Why before ``ln_f`` (the transformer metrics' o is NAS-Bench-BERT's
``last_hidden_state``): Σ over the features of a LayerNorm output with unit
gain is Σ β, a constant, so its gradient is exactly zero and every gradient
metric would read float round-off. The GPT-2 blocks LTS trained put their
LayerNorms inside the residual branches, so the residual stream's sum has a
real gradient. (With ``block_layout="pre_lnorm"`` and ``pre_lnorm=False``
each block ends with a LayerNorm, and the same zero-gradient caveat applies.)

Forward hooks and the decoder's own outputs give, reduced where possible:

* the first sequence's output of every block's MLP activation [S, F];
* for each of the query, key and value projections (the three parts of the
  fused ``qkv`` linear) the mean over (batch, features) of the max over
  positions of its output [B, S, h·d];
* for each block's attention probabilities [B, h, S, S] the max over the head
  axis (as the paper's BERT code did), averaged over the (batch, query, key)
  entries the causal mask allows (keys up to the query: S(S+1)/2 per sequence).

After the backward: (W, ∂W) of the linears the weight metrics read (the
query, key and value blocks are row blocks of ``qkv``: views of its weight
and gradient), ∂ of the position table at the S positions used, and on
request each block's output (capture ``hidden_states``) and ∂(Σ o)/∂e
(capture ``input_jacobian``). The model's gradients are cleared after.

Roles (attribute names of :class:`~tfnas.models.lts_gpt2.LtsGpt2Block`):

====================  ===================================================
role                  linears
====================  ===================================================
token mixing          attn.qkv as query, key, value; attn.proj
head importance       query, key, value
confidence            query, key, value (their outputs)
feed forward          mlp.fc, mlp.proj
====================  ===================================================
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from tfnas.models.lts_gpt2 import LtsGpt2LMHeadModel
from tfnas.scoring.api import ScoringContext, register_pass
from tfnas.scoring.bert.passes import BertGradOutputs, WeightGrad

QKV = ("query", "key", "value")


@dataclass
class GptGradOutputs(BertGradOutputs):
    """The ``grad`` pass's outputs: the transformer fields of :class:`BertGradOutputs` (filled as the
    module docstring says) plus ∂(Σ o)/∂e.

    Attributes:
        input_grad: ∂(Σ o)/∂e [B, S, D] (capture ``input_jacobian``); None unless asked.
    """

    input_grad: Tensor | None = None


def decoder(model: torch.nn.Module) -> LtsGpt2LMHeadModel:
    """``model`` itself, checked.

    Raises:
        TypeError: not an :class:`~tfnas.models.lts_gpt2.LtsGpt2LMHeadModel`.
    """
    if not isinstance(model, LtsGpt2LMHeadModel):
        raise TypeError(f"GPT passes need an LtsGpt2LMHeadModel, got {type(model).__name__}")
    return model


def input_ids(ctx: ScoringContext) -> Tensor:
    """The batch's ``input_ids`` [B, S] on the model's device.

    Raises:
        ValueError: no ``input_ids`` in the batch.
    """
    batch = ctx.batch
    if not isinstance(batch, dict) or "input_ids" not in batch:
        raise ValueError("GPT passes need a batch dict with 'input_ids'")
    return batch["input_ids"].to(next(ctx.model.parameters()).device)


def _split_qkv(t: Tensor, n: int) -> list[Tensor]:
    """The query, key and value row blocks of a fused ``qkv`` tensor [3n, ...] (views)."""
    return [t[i * n : (i + 1) * n] for i in range(3)]


def collect(model: LtsGpt2LMHeadModel, ids: Tensor, hidden_states: bool = False,
            input_jacobian: bool = False) -> GptGradOutputs:  # fmt: skip
    """Run the forward and the backward of Σ o once and gather the metrics' inputs (module docstring).

    Args:
        model: the decoder (its grads are cleared first and after).
        ids: token ids [B, S].
        hidden_states: keep every block's output [B, S, D].
        input_jacobian: keep ∂(Σ o)/∂e [B, S, D].

    Raises:
        TypeError: not an LTS GPT-2 decoder.
        RuntimeError: a weight the metrics read received no gradient.
    """
    body = decoder(model).transformer
    b, s = ids.shape
    activations: list[Tensor] = []
    confidence: list[tuple[str, Tensor]] = []  # 0-d tensors until the end: no device sync in the forward
    handles = []

    def keep_first_sequence(module, inputs, out):
        activations.append(out[0].detach().clone())

    def qkv_confidence(i, width):
        def hook(module, inputs, out):
            parts = out.detach().view(b, s, 3, width)
            for j, role in enumerate(QKV):  # [B, S, h·d]: max over positions, mean over batch and features
                confidence.append((f"h.{i}.attn.{role}", parts[:, :, j].amax(dim=1).mean(dtype=torch.float64)))

        return hook

    try:
        for i, block in enumerate(body.h):
            handles.append(block.mlp.act.register_forward_hook(keep_first_sequence))
            width = block.attn.n_head * block.attn.d_head
            handles.append(block.attn.qkv.register_forward_hook(qkv_confidence(i, width)))
        model.zero_grad(set_to_none=True)
        e = body.embed(ids)
        if input_jacobian:
            e.retain_grad()
        res = body.decode(e, output_hidden_states=True, output_attentions=True)
        o = res["hidden_states"][-1]
        o.backward(torch.ones_like(o))
    finally:
        for h in handles:
            h.remove()

    allowed = b * s * (s + 1) / 2
    softmax_conf = [p.detach().amax(dim=1).sum(dtype=torch.float64) / allowed for p in res["attentions"]]

    def weight_grad(name: str, w: torch.nn.Parameter) -> tuple[Tensor, Tensor]:
        if w.grad is None:
            raise RuntimeError(f"{name} received no gradient (frozen or unused parameter)")
        return w.detach(), w.grad.detach()

    mixing: list[WeightGrad] = []
    ffn: list[WeightGrad] = []
    importance: list[WeightGrad] = []
    for i, block in enumerate(body.h):
        width = block.attn.n_head * block.attn.d_head
        w, g = weight_grad(f"h.{i}.attn.qkv.weight", block.attn.qkv.weight)
        parts = [(f"h.{i}.attn.{r}", pw, pg) for r, pw, pg in zip(QKV, _split_qkv(w, width), _split_qkv(g, width))]
        mixing += parts + [(f"h.{i}.attn.proj", *weight_grad(f"h.{i}.attn.proj.weight", block.attn.proj.weight))]
        importance += parts
        ffn += [(f"h.{i}.mlp.{n}", *weight_grad(f"h.{i}.mlp.{n}.weight", getattr(block.mlp, n).weight))
                for n in ("fc", "proj")]  # fmt: skip
    _, pos_grad = weight_grad("wpe.weight", body.wpe.weight)
    out = GptGradOutputs(
        mixing, ffn, importance, activations,
        [v.item() for _, v in confidence], [v.item() for v in softmax_conf],
        pos_grad[:s],
        {"confidence": [n for n, _ in confidence], "softmax_confidence": [f"h.{i}.attn" for i in range(len(body.h))]},
        [h.detach() for h in res["hidden_states"][1:]] if hidden_states else None,
        e.grad.detach() if input_jacobian else None,
    )  # fmt: skip
    # The tensors above are kept by reference; the model itself is left without grads.
    model.zero_grad(set_to_none=True)
    return out


@register_pass("gpt", "grad", captures=("hidden_states", "input_jacobian"))
def grad_pass(ctx: ScoringContext) -> GptGradOutputs:
    """Engine pass ``("gpt", "grad")``: :func:`collect` on the context's model and batch."""
    return collect(decoder(ctx.model), input_ids(ctx), ctx.wants("hidden_states"), ctx.wants("input_jacobian"))
