"""The LiteTransformerSearch GPT-2 decoder: heterogeneous layers, adaptive input and softmax.

Implements the decoder-only language model of the LTS GPT-2 search space
(Javaheripi et al., "LiteTransformerSearch: Training-free Neural Architecture
Search for Efficient Language Models", NeurIPS 2022; its public code is
archai's ``neurips-lts`` branch, ``GPT2LMHeadModelFlex``), with transformers'
conventions (``PretrainedConfig`` / ``PreTrainedModel``,
``save_pretrained`` / ``from_pretrained``). The parameter count of every
part equals the benchmark's ``params_summary.yaml`` (tests).

Structure (D = ``d_model``, E = ``d_embed``, layer i with h_i heads of size
d_i = D / h_i and inner size F_i)::

    wte   AdaptiveEmbedding: the vocabulary split at the cutoffs into clusters;
          cluster k embeds its tokens in E / div_val**k dims and projects them
          to D (div_val = 1: one V×E table, projected only when E ≠ D);
          the result is scaled by √D
    wpe   learned positions, tgt_len × D
    h[i]  GPT-2 block: x + attn(ln_1(x)), then + mlp(ln_2(x))
          attn  qkv Linear D→3·h_i·d_i, causal softmax(q kᵀ/√d_i) v, proj h_i·d_i→D
          mlp   Linear D→F_i, GELU (tanh form, GPT-2's gelu_new), Linear F_i→D
    ln_f  final LayerNorm
    crit  ProjectedAdaptiveLogSoftmax: head softmax over cluster 0's tokens and
          one logit per tail cluster; a tail token's log-probability adds its
          cluster's log-probability and its log-softmax within the cluster.
          With ``tie_weight`` the output weights are the embedding tables;
          with ``tie_projs[k]`` cluster k reuses the embedding's projection.

The adaptive embedding and softmax live in :mod:`tfnas.models.adaptive`; this
module holds the configuration, the blocks, the model and its weight init.

Layer-norm placement: the GPT-2 model LTS trained puts LayerNorm before the
attention and the MLP and adds a final LayerNorm, whatever the
``pre_lnorm`` field of its configuration says (the field is inherited from
its Transformer-XL configuration and always false). That is the default
(``block_layout="gpt2"``). ``block_layout="pre_lnorm"`` honours the field
instead: ``pre_lnorm=False`` then gives post-LN blocks
``ln_1(x + attn(x))``, ``ln_2(x + mlp(x))``, and True the GPT-2 layout. Both
have the same parameters (the final LayerNorm is kept).

Cutoffs are cleaned as LTS does: the list is cut before its first entry
larger than ``n_token`` (a first entry above ``n_token`` is clamped to it),
and ``n_token`` is appended when missing. The WikiText-103 set's
``[19997, 39997, 199997, 50264]`` becomes ``[19997, 39997, 50264]`` (three
clusters); the LM1B set's ``[59997, 99997, 639997, 50264]`` becomes
``[50264]`` (one cluster: a plain softmax).
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Iterable, Mapping, Sequence

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from tfnas.models.adaptive import AdaptiveEmbedding, ProjectedAdaptiveLogSoftmax

#: Block layouts (see the module docstring).
BLOCK_LAYOUTS = ("gpt2", "pre_lnorm")

#: Fields of an LTS ``model_config.yaml`` that describe Transformer-XL features
#: the GPT-2 model does not have; they are accepted and ignored when they hold
#: these inactive values, refused otherwise.
_INACTIVE_LTS_FIELDS = {
    "attn_type": (0,),
    "sample_softmax": (-1, 0),
    "primer_conv": (False,),
    "primer_square": (False,),
    "ext_len": (0,),
}
_IGNORED_LTS_FIELDS = (
    "mem_len", "clamp_len", "same_length", "use_cache", "dtype",
    "weight_init_type", "weight_init_range",
)  # fmt: skip


def clean_cutoffs(cutoffs: Sequence[int] | None, n_token: int) -> list[int]:
    """The cluster boundaries LTS uses for ``cutoffs`` and a vocabulary of ``n_token``.

    Args:
        cutoffs: increasing token ids; None or empty means one cluster.
        n_token: vocabulary size V.

    Returns:
        Increasing right ends of the clusters, the last one V.

    Raises:
        ValueError: the cutoffs are not increasing, or one is not positive.
    """
    cut = [int(c) for c in (cutoffs or [])]
    for i, c in enumerate(cut):
        if c > n_token:
            cut = cut[: max(i, 1)]  # as LTS: drop everything from the first entry above V on, unless it is the first
            break
    if any(c <= 0 for c in cut) or any(b <= a for a, b in zip(cut, cut[1:])):
        raise ValueError(f"cutoffs must be positive and increasing up to n_token={n_token}, got {list(cutoffs or [])}")
    cut = cut or [n_token]
    cut[-1] = min(cut[-1], n_token)
    if cut[-1] < n_token:
        cut.append(n_token)
    return cut


def _per_layer(value: Any, n_layer: int, name: str) -> list[int]:
    values = [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)] * n_layer
    if len(values) != n_layer:
        raise ValueError(f"{name} has {len(values)} entries for n_layer={n_layer}")
    return values


class LtsGpt2Config(PretrainedConfig):
    """Configuration of :class:`LtsGpt2LMHeadModel` (names as in LTS's ``model_config.yaml``).

    Args:
        n_token: vocabulary size V (GPT-2 BPE: 50,264 in LTS).
        tgt_len: longest sequence, the number of learned positions.
        d_model: D, the width of every block.
        d_embed: E, the width of the adaptive embedding's first cluster; −1 means D.
        n_layer: number of blocks.
        n_head: heads per block, an int or one per block.
        d_head: head size, an int or one per block; −1 means D / n_head.
        d_inner: inner size of each block's MLP, an int or one per block.
        div_val: the k-th cluster embeds in E / div_val**k dims.
        cutoffs: cluster boundaries (cleaned by :func:`clean_cutoffs`).
        adaptive: only sets the default ``tie_projs``: ``[not adaptive, True, ...]``.
        tie_weight: the softmax's output weights are the embedding tables.
        tie_projs: per cluster, whether the softmax reuses the embedding's projection.
        dropout: dropout after the attention projection and the MLP (LTS: 0.1).
        dropatt: dropout on the attention probabilities (LTS: 0).
        embd_pdrop: dropout on the embedding output (LTS: 0).
        pre_lnorm: the LTS configuration field, used only when
            ``block_layout="pre_lnorm"``.
        block_layout: ``"gpt2"`` (LTS's trained model) or ``"pre_lnorm"``.
        layer_norm_epsilon: LayerNorm epsilon (GPT-2: 1e-5).
        weight_init_std: std of the N(0, σ) init of weights and embeddings (0.02).
        proj_init_std: std of the init of the embedding and softmax projections (0.01).

    Raises:
        ValueError: inconsistent sizes (the message names the field).
    """

    model_type = "lts_gpt2"

    def __init__(
        self,
        n_token: int = 50264,
        tgt_len: int = 192,
        d_model: int = 512,
        d_embed: int = -1,
        n_layer: int = 16,
        n_head: int | Sequence[int] = 8,
        d_head: int | Sequence[int] = -1,
        d_inner: int | Sequence[int] = 2048,
        div_val: int = 1,
        cutoffs: Sequence[int] | None = (19997, 39997, 199997),
        adaptive: bool = True,
        tie_weight: bool = True,
        tie_projs: Sequence[bool] | None = None,
        dropout: float = 0.1,
        dropatt: float = 0.0,
        embd_pdrop: float = 0.0,
        pre_lnorm: bool = False,
        block_layout: str = "gpt2",
        layer_norm_epsilon: float = 1e-5,
        weight_init_std: float = 0.02,
        proj_init_std: float = 0.01,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.n_token = int(n_token)
        self.tgt_len = int(tgt_len)
        self.d_model = int(d_model)
        self.d_embed = self.d_model if int(d_embed) == -1 else int(d_embed)
        self.n_layer = int(n_layer)
        self.n_head = _per_layer(n_head, self.n_layer, "n_head")
        heads = _per_layer(d_head, self.n_layer, "d_head")
        for i, (h, dh) in enumerate(zip(self.n_head, heads)):
            if h < 1:
                raise ValueError(f"n_head[{i}]={h} must be at least 1")
            if dh == -1 and self.d_model % h:
                raise ValueError(f"d_model={self.d_model} is not divisible by n_head[{i}]={h} (and d_head is -1)")
        self.d_head = [self.d_model // h if dh == -1 else dh for h, dh in zip(self.n_head, heads)]
        self.d_inner = _per_layer(d_inner, self.n_layer, "d_inner")
        self.div_val = int(div_val)
        if self.div_val < 1:
            raise ValueError(f"div_val={div_val} must be at least 1")
        self.cutoffs = clean_cutoffs(cutoffs, self.n_token)
        if self.div_val > 1 and self.d_embed // self.div_val ** (len(self.cutoffs) - 1) < 1:
            raise ValueError(
                f"d_embed={self.d_embed} with div_val={self.div_val} leaves no dimension for cluster "
                f"{len(self.cutoffs) - 1}"
            )
        self.adaptive = bool(adaptive)
        self.tie_weight = bool(tie_weight)
        if tie_projs is None or len(tie_projs) == 0:
            tie_projs = [not self.adaptive] + [True] * (len(self.cutoffs) - 1)
        tie_projs = [bool(t) for t in tie_projs][: len(self.cutoffs)]
        if len(tie_projs) < len(self.cutoffs):
            raise ValueError(f"tie_projs has {len(tie_projs)} entries for {len(self.cutoffs)} clusters")
        self.tie_projs = tie_projs
        self.dropout = float(dropout)
        self.dropatt = float(dropatt)
        self.embd_pdrop = float(embd_pdrop)
        self.pre_lnorm = bool(pre_lnorm)
        if block_layout not in BLOCK_LAYOUTS:
            raise ValueError(f"block_layout={block_layout!r} is not one of {list(BLOCK_LAYOUTS)}")
        self.block_layout = block_layout
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.weight_init_std = float(weight_init_std)
        self.proj_init_std = float(proj_init_std)

    @classmethod
    def from_lts(cls, model_config: Mapping[str, Any], **overrides: Any) -> "LtsGpt2Config":
        """Build from one LTS ``model_config.yaml`` (a parsed dict).

        Transformer-XL fields that the GPT-2 model does not have (memory
        length, relative attention, sampled softmax, Primer) are ignored
        when inactive.

        Args:
            model_config: the parsed YAML.
            **overrides: values that replace the file's (e.g. ``dropout=0``).

        Raises:
            ValueError: an active Transformer-XL feature, or an unknown field.
        """
        known = set(inspect.signature(cls.__init__).parameters) - {"self", "kwargs"}
        args: dict[str, Any] = {}
        for key, value in model_config.items():
            if key in _INACTIVE_LTS_FIELDS:
                if value not in _INACTIVE_LTS_FIELDS[key]:
                    raise ValueError(f"{key}={value!r} is a Transformer-XL feature the GPT-2 decoder does not have")
            elif key in _IGNORED_LTS_FIELDS:
                continue
            elif key in known:
                args[key] = value
            else:
                raise ValueError(f"unknown LTS model_config field {key!r}")
        args.update(overrides)
        return cls(**args)

    @property
    def num_hidden_layers(self) -> int:
        return self.n_layer

    @property
    def hidden_size(self) -> int:
        return self.d_model

    @property
    def cluster_dims(self) -> list[int]:
        """Embedding width of each cluster: E / div_val**k."""
        return [self.d_embed // self.div_val**k for k in range(len(self.cutoffs))]


class LtsGpt2Attention(nn.Module):
    """Causal multi-head self-attention of one block: [B, S, D] -> [B, S, D].

    Args:
        config: model sizes.
        layer: block index (its ``n_head`` / ``d_head``).
    """

    def __init__(self, config: LtsGpt2Config, layer: int):
        super().__init__()
        self.n_head, self.d_head = config.n_head[layer], config.d_head[layer]
        inner = self.n_head * self.d_head
        self.qkv = nn.Linear(config.d_model, 3 * inner)
        self.proj = nn.Linear(inner, config.d_model)
        self.attn_drop = nn.Dropout(config.dropatt)
        self.resid_drop = nn.Dropout(config.dropout)

    def forward(
        self, x: torch.Tensor, head_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Attend causally.

        Args:
            x: [B, S, D].
            head_mask: optional multiplier of each head's output, [h] or [B, h].

        Returns:
            (output [B, S, D], attention probabilities [B, h, S, S],
            per-head context before the output projection [B, h, S, d]).
        """
        b, s, _ = x.shape
        q, k, v = self.qkv(x).view(b, s, 3, self.n_head, self.d_head).permute(2, 0, 3, 1, 4)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.d_head)
        causal = torch.ones(s, s, dtype=torch.bool, device=x.device).tril()
        scores = scores.masked_fill(~causal, torch.finfo(scores.dtype).min)
        probs = scores.softmax(dim=-1)
        context = self.attn_drop(probs) @ v  # [B, h, S, d]
        if head_mask is not None:
            context = context * head_mask.reshape(*head_mask.shape[:-1], self.n_head, 1, 1)
        out = self.proj(context.transpose(1, 2).reshape(b, s, self.n_head * self.d_head))
        return self.resid_drop(out), probs, context


class LtsGpt2MLP(nn.Module):
    """Position-wise feed-forward of one block: [B, S, D] -> [B, S, D]."""

    def __init__(self, config: LtsGpt2Config, layer: int):
        super().__init__()
        self.fc = nn.Linear(config.d_model, config.d_inner[layer])
        self.act = nn.GELU(approximate="tanh")
        self.proj = nn.Linear(config.d_inner[layer], config.d_model)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(self.act(self.fc(x))))


class LtsGpt2Block(nn.Module):
    """One decoder block (layout per ``config.block_layout``): [B, S, D] -> [B, S, D]."""

    def __init__(self, config: LtsGpt2Config, layer: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.d_model, eps=config.layer_norm_epsilon)
        self.attn = LtsGpt2Attention(config, layer)
        self.ln_2 = nn.LayerNorm(config.d_model, eps=config.layer_norm_epsilon)
        self.mlp = LtsGpt2MLP(config, layer)
        self.post_ln = config.block_layout == "pre_lnorm" and not config.pre_lnorm

    def forward(self, x: torch.Tensor, head_mask: torch.Tensor | None = None):
        """Returns (output [B, S, D], attention probabilities, per-head context); see :class:`LtsGpt2Attention`."""
        if self.post_ln:
            a, probs, context = self.attn(x, head_mask)
            x = self.ln_1(x + a)
            return self.ln_2(x + self.mlp(x)), probs, context
        a, probs, context = self.attn(self.ln_1(x), head_mask)
        x = x + a
        return x + self.mlp(self.ln_2(x)), probs, context


class LtsGpt2PreTrainedModel(PreTrainedModel):
    """LTS's weight init and the save/load plumbing.

    Init (LTS's ``GPT2PreTrainedModel._init_weights``): Linear weights and
    embedding tables N(0, ``weight_init_std``), biases 0, LayerNorm 1 and 0,
    the embedding's and softmax's projections N(0, ``proj_init_std``), the
    softmax's cluster weights and untied tables N(0, ``weight_init_std``) and
    biases 0; the attention's and MLP's output projections N(0,
    ``weight_init_std`` / √(2 · n_layer)) (GPT-2's residual scaling).
    """

    config_class = LtsGpt2Config
    base_model_prefix = "transformer"
    supports_gradient_checkpointing = False
    _no_split_modules = ["LtsGpt2Block"]

    def _init_weights(self, module: nn.Module) -> None:
        if any(p.is_meta for p in module.parameters()):
            return  # meta tensors (parameter counting) hold no values to initialise
        std, proj_std = self.config.weight_init_std, self.config.proj_init_std
        if isinstance(module, nn.Linear):
            module.weight.data.normal_(0.0, std)
            if module.bias is not None:
                module.bias.data.zero_()
        elif isinstance(module, (LtsGpt2Attention, LtsGpt2MLP)):
            # after its Linear children (apply visits children first): GPT-2's residual scaling
            module.proj.weight.data.normal_(0.0, std / math.sqrt(2 * self.config.n_layer))
        elif isinstance(module, nn.Embedding):
            module.weight.data.normal_(0.0, std)
        elif isinstance(module, nn.LayerNorm):
            module.weight.data.fill_(1.0)
            module.bias.data.zero_()
        elif isinstance(module, AdaptiveEmbedding):
            for p in module.emb_projs:
                p.data.normal_(0.0, proj_std)
        elif isinstance(module, ProjectedAdaptiveLogSoftmax):
            if module.n_clusters > 0:
                module.cluster_weight.data.normal_(0.0, std)
                module.cluster_bias.data.zero_()
            for p in module.out_projs.values():
                p.data.normal_(0.0, proj_std)
            for p in module.out_weights:
                p.data.normal_(0.0, std)
            for p in module.out_biases:
                p.data.zero_()


class LtsGpt2Model(LtsGpt2PreTrainedModel):
    """The decoder body: token ids [B, S] -> final hidden states [B, S, D] (after ``ln_f``).

    Args:
        config: an :class:`LtsGpt2Config`.
    """

    def __init__(self, config: LtsGpt2Config):
        super().__init__(config)
        self.wte = AdaptiveEmbedding(config)
        self.wpe = nn.Embedding(config.tgt_len, config.d_model)
        self.drop = nn.Dropout(config.embd_pdrop)
        self.h = nn.ModuleList(LtsGpt2Block(config, i) for i in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.d_model, eps=config.layer_norm_epsilon)
        self.post_init()

    def get_input_embeddings(self) -> AdaptiveEmbedding:
        return self.wte

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Embedding output fed to the first block: ids [B, S] -> [B, S, D] (tokens + positions).

        Raises:
            ValueError: S > ``tgt_len`` or ids not of rank 2.
        """
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be [batch, seq], got shape {tuple(input_ids.shape)}")
        s = input_ids.shape[1]
        if s > self.config.tgt_len:
            raise ValueError(f"sequence length {s} exceeds tgt_len={self.config.tgt_len} (the position table)")
        positions = torch.arange(s, device=input_ids.device)
        return self.drop(self.wte(input_ids) + self.wpe(positions))

    def decode(
        self,
        hidden: torch.Tensor,
        head_mask: Sequence[torch.Tensor | None] | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> dict[str, Any]:
        """Run the blocks and ``ln_f`` on an embedding output ``hidden`` [B, S, D].

        Args:
            hidden: [B, S, D].
            head_mask: one multiplier per block ([h_i] or [B, h_i]) or None.
            output_hidden_states: also return the embedding output and each block's output.
            output_attentions: also return each block's attention probabilities
                [B, h_i, S, S] and per-head context [B, h_i, S, d_i].

        Returns:
            ``{"last_hidden_state": [B, S, D], "hidden_states": (L + 1 tensors) or None,
            "attentions": (L tensors) or None, "contexts": (L tensors) or None}``.
        """
        states = [hidden] if output_hidden_states else None
        probs_all, ctx_all = ([], []) if output_attentions else (None, None)
        for i, block in enumerate(self.h):
            hidden, probs, ctx = block(hidden, None if head_mask is None else head_mask[i])
            if states is not None:
                states.append(hidden)
            if probs_all is not None:
                probs_all.append(probs)
                ctx_all.append(ctx)
        return {
            "last_hidden_state": self.ln_f(hidden),
            "hidden_states": tuple(states) if states is not None else None,
            "attentions": tuple(probs_all) if probs_all is not None else None,
            "contexts": tuple(ctx_all) if ctx_all is not None else None,
        }

    def forward(self, input_ids: torch.Tensor, **kwargs: Any) -> dict[str, Any]:
        """ids [B, S] -> :meth:`decode`'s dict (``kwargs`` are its options)."""
        return self.decode(self.embed(input_ids), **kwargs)


class LtsGpt2LMHeadModel(LtsGpt2PreTrainedModel):
    """The LTS GPT-2 causal language model: the decoder and its tied adaptive softmax.

    Args:
        config: an :class:`LtsGpt2Config`.
    """

    def __init__(self, config: LtsGpt2Config):
        super().__init__(config)
        self.transformer = LtsGpt2Model(config)
        self.crit = ProjectedAdaptiveLogSoftmax(config)
        self.post_init()

    def nll(self, hidden: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-token negative log-likelihood (nats): hidden [..., D], target [...] -> [...]."""
        flat = self.crit(hidden.reshape(-1, hidden.shape[-1]), target.reshape(-1), self.transformer.wte)
        return flat.view(target.shape)

    def log_prob(self, hidden: torch.Tensor) -> torch.Tensor:
        """Full next-token log-distribution: hidden [..., D] -> [..., V] (V floats per position)."""
        flat = self.crit.log_prob(hidden.reshape(-1, hidden.shape[-1]), self.transformer.wte)
        return flat.view(*hidden.shape[:-1], -1)

    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        return_dict: bool | None = None,
    ) -> CausalLMOutputWithPast:
        """Causal LM loss on token ids.

        Args:
            input_ids: [B, S] token ids, S ≤ ``tgt_len``.
            labels: [B, S] ids to predict, shifted inside as in transformers
                (position t predicts ``labels[:, t + 1]``); usually ``input_ids``.
            output_hidden_states: also return the embedding output and every block's output.
            output_attentions: also return every block's attention probabilities.
            return_dict: accepted for transformers compatibility.

        Returns:
            ``CausalLMOutputWithPast`` with ``loss`` (mean NLL in nats over the
            B·(S−1) predicted tokens, when labels are given), ``logits`` None
            (the full distribution is :meth:`log_prob`), and the requested states.
        """
        out = self.transformer(
            input_ids, output_hidden_states=output_hidden_states, output_attentions=output_attentions
        )
        loss = None
        if labels is not None:
            loss = self.nll(out["last_hidden_state"][:, :-1], labels[:, 1:]).mean()
        return CausalLMOutputWithPast(
            loss=loss, logits=None, hidden_states=out["hidden_states"], attentions=out["attentions"]
        )


def parameter_counts(model: LtsGpt2LMHeadModel) -> dict[str, int]:
    """Parameters by part, as LTS's ``params_summary.yaml`` counts them.

    Returns:
        ``{"AdaEmb": token embedding + positions, "Attn": attention,
        "FFN": MLPs, "nonembedding": blocks + final LayerNorm,
        "total": every distinct parameter}``.
    """
    body = model.transformer

    def count(params: Iterable[nn.Parameter]) -> int:
        return sum(p.numel() for p in params)

    return {
        "AdaEmb": count(body.wte.parameters()) + count(body.wpe.parameters()),
        "Attn": sum(count(b.attn.parameters()) for b in body.h),
        "FFN": sum(count(b.mlp.parameters()) for b in body.h),
        "nonembedding": count(body.h.parameters()) + count(body.ln_f.parameters()),
        "total": count(model.parameters()),
    }


AutoConfig.register(LtsGpt2Config.model_type, LtsGpt2Config, exist_ok=True)
AutoModelForCausalLM.register(LtsGpt2Config, LtsGpt2LMHeadModel, exist_ok=True)
