"""Adaptive input embedding and adaptive softmax, as Transformer-XL and LiteTransformerSearch build them.

The vocabulary is split at increasing cutoffs into clusters; cluster k embeds
its tokens in E / div_val**k dimensions and projects them to the model width
D (:class:`AdaptiveEmbedding`, Baevski & Auli, ICLR 2019), and the output
distribution is a head softmax over cluster 0's tokens and one logit per tail
cluster, times a softmax within the tail cluster
(:class:`ProjectedAdaptiveLogSoftmax`, Grave et al., ICML 2017), optionally
tied to the embedding's tables and projections. The layout (parameter names
and shapes) is LTS's, so that parameter counts match its ``params_summary.yaml``
(:mod:`tfnas.models.lts_gpt2`, whose configuration supplies the sizes and
whose ``_init_weights`` initialises these parameters).
"""

from __future__ import annotations

import math
from typing import Protocol, Sequence

import torch
import torch.nn.functional as F
from torch import nn


class AdaptiveSizes(Protocol):
    """The sizes both modules read (:class:`~tfnas.models.lts_gpt2.LtsGpt2Config` has them).

    Attributes:
        n_token: vocabulary size V.
        d_model: D, the width the embedding projects to and the softmax reads.
        d_embed: E, the width of cluster 0.
        cutoffs: right ends of the clusters, increasing, the last one V.
        div_val: cluster k has E / div_val**k dims.
        tie_weight: the softmax's output tables are the embedding's.
        tie_projs: per cluster, the softmax reuses the embedding's projection.
        cluster_dims: E / div_val**k for each cluster k.
    """

    n_token: int
    d_model: int
    d_embed: int
    cutoffs: Sequence[int]
    div_val: int
    tie_weight: bool
    tie_projs: Sequence[bool]

    @property
    def cluster_dims(self) -> list[int]: ...


class AdaptiveEmbedding(nn.Module):
    """Adaptive input embedding (Baevski & Auli, ICLR 2019), as Transformer-XL and LTS build it.

    Token t of cluster k (``cutoff_ends[k] <= t < cutoff_ends[k+1]``) is
    ``√D · P_k · T_k[t - cutoff_ends[k]]`` with ``T_k`` its cluster's table
    (rows × E/div_val**k) and ``P_k`` (D × E/div_val**k) its projection. With
    ``div_val = 1`` there is one V × E table, projected only when E ≠ D.

    Args:
        config: sizes (``n_token``, ``d_embed``, ``d_model``, ``cutoffs``, ``div_val``).
    """

    def __init__(self, config: AdaptiveSizes):
        super().__init__()
        self.d_proj = config.d_model
        self.div_val = config.div_val
        self.cutoff_ends = [0] + list(config.cutoffs)
        self.scale = math.sqrt(config.d_model)
        self.emb_layers = nn.ModuleList()
        self.emb_projs = nn.ParameterList()
        if self.div_val == 1:
            self.emb_layers.append(nn.Embedding(config.n_token, config.d_embed))
            if config.d_embed != config.d_model:
                self.emb_projs.append(nn.Parameter(torch.empty(config.d_model, config.d_embed)))
        else:
            for k, d in enumerate(config.cluster_dims):
                self.emb_layers.append(nn.Embedding(self.cutoff_ends[k + 1] - self.cutoff_ends[k], d))
                self.emb_projs.append(nn.Parameter(torch.empty(config.d_model, d)))

    def projection(self, k: int) -> torch.Tensor | None:
        """P_k, the projection of cluster k (None when there is none)."""
        if len(self.emb_projs) == 0:
            return None
        return self.emb_projs[0] if len(self.emb_projs) == 1 else self.emb_projs[k]

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Token ids [...] -> embeddings [..., D].

        Raises:
            IndexError: an id outside ``[0, n_token)``.
        """
        if self.div_val == 1:
            out = self.emb_layers[0](input_ids)
            proj = self.projection(0)
            if proj is not None:
                out = F.linear(out, proj)
            return out * self.scale
        flat = input_ids.reshape(-1)
        if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= self.cutoff_ends[-1]):
            raise IndexError(f"token ids must lie in [0, {self.cutoff_ends[-1]})")
        param = self.emb_projs[0]
        out = torch.zeros(flat.shape[0], self.d_proj, dtype=param.dtype, device=param.device)
        for k, layer in enumerate(self.emb_layers):
            lo, hi = self.cutoff_ends[k], self.cutoff_ends[k + 1]
            idx = ((flat >= lo) & (flat < hi)).nonzero(as_tuple=True)[0]
            if idx.numel():
                out = out.index_add(0, idx, F.linear(layer(flat[idx] - lo), self.emb_projs[k]))
        return (out * self.scale).view(*input_ids.shape, self.d_proj)


class ProjectedAdaptiveLogSoftmax(nn.Module):
    """Adaptive softmax (Grave et al., ICML 2017) with LTS's projections and weight tying.

    Cluster k's logits are ``(h P_k) W_kᵀ + b_k`` for a hidden state h [D],
    with ``W_k`` the cluster's output table (the embedding's when
    ``tie_weight``), ``P_k`` a D × E_k projection (the embedding's when
    ``tie_projs[k]``; none when div_val = 1 and E = D) and ``b_k`` a bias.
    The head scores cluster 0's tokens plus one logit per tail cluster
    (``cluster_weight`` [n_clusters, E], ``cluster_bias``), so that
    ``log p(t) = log p_head(cluster(t)) + log p_cluster(t)`` for a tail token
    and ``log p_head(t)`` for a head token.

    Parameters it owns (those ``params_summary.yaml`` counts in ``total`` only):
    the biases (V in all), the cluster head, the untied projections, and the
    output tables when ``tie_weight`` is False.

    Args:
        config: sizes and tying (``n_token``, ``d_embed``, ``d_model``,
            ``cutoffs``, ``div_val``, ``tie_weight``, ``tie_projs``).
    """

    def __init__(self, config: AdaptiveSizes):
        super().__init__()
        self.div_val = config.div_val
        self.cutoff_ends = [0] + list(config.cutoffs)
        self.n_clusters = len(config.cutoffs) - 1
        self.tie_weight = config.tie_weight
        self.tie_projs = list(config.tie_projs)
        dims = config.cluster_dims if self.div_val > 1 else [config.d_embed]
        sizes = [hi - lo for lo, hi in zip(self.cutoff_ends, self.cutoff_ends[1:])]
        if self.n_clusters > 0:
            self.cluster_weight = nn.Parameter(torch.empty(self.n_clusters, config.d_embed))
            self.cluster_bias = nn.Parameter(torch.empty(self.n_clusters))
        # One bias (and, untied, one table) per cluster; one of each over the whole vocabulary when div_val = 1.
        rows = sizes if self.div_val > 1 else [config.n_token]
        self.out_biases = nn.ParameterList(nn.Parameter(torch.empty(r)) for r in rows)
        self.out_weights = nn.ParameterList(
            [] if self.tie_weight else [nn.Parameter(torch.empty(r, d)) for r, d in zip(rows, dims)]
        )
        # Untied projections; a key per cluster that owns one.
        self.out_projs = nn.ParameterDict()
        for k in range(len(sizes)):
            d = dims[k] if self.div_val > 1 else config.d_embed
            needs = self.div_val > 1 or config.d_embed != config.d_model
            if needs and not self.tie_projs[k]:
                self.out_projs[str(k)] = nn.Parameter(torch.empty(config.d_model, d))

    def _cluster(self, k: int, emb: AdaptiveEmbedding | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(W_k [rows, E_k], b_k [rows], P_k [D, E_k] or None) of cluster k."""
        lo, hi = self.cutoff_ends[k], self.cutoff_ends[k + 1]
        if self.tie_weight:
            if emb is None:
                raise ValueError("tie_weight is set: pass the AdaptiveEmbedding whose tables are the output weights")
            table = emb.emb_layers[0 if self.div_val == 1 else k].weight
        else:
            table = self.out_weights[0 if self.div_val == 1 else k]
        if self.div_val == 1:
            weight, bias = table[lo:hi], self.out_biases[0][lo:hi]
        else:
            weight, bias = table, self.out_biases[k]
        if self.tie_projs[k]:
            proj = emb.projection(k) if emb is not None else None
        else:
            proj = self.out_projs[str(k)] if str(k) in self.out_projs else None
        return weight, bias, proj

    @staticmethod
    def _logits(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, proj: torch.Tensor | None):
        if proj is not None:
            hidden = hidden @ proj  # [N, D] @ [D, E_k]
        return F.linear(hidden, weight, bias)

    def _head(self, hidden: torch.Tensor, emb: AdaptiveEmbedding | None) -> torch.Tensor:
        """Head log-probabilities [N, cutoff_0 + n_clusters]."""
        weight, bias, proj = self._cluster(0, emb)
        if self.n_clusters > 0:
            weight = torch.cat([weight, self.cluster_weight], 0)
            bias = torch.cat([bias, self.cluster_bias], 0)
        return F.log_softmax(self._logits(hidden, weight, bias, proj), dim=-1)

    def log_prob(self, hidden: torch.Tensor, emb: AdaptiveEmbedding | None = None) -> torch.Tensor:
        """Full log-distribution over the vocabulary: hidden [N, D] -> [N, V]."""
        head = self._head(hidden, emb)
        cut0 = self.cutoff_ends[1]
        parts = [head[:, :cut0]]
        for k in range(1, self.n_clusters + 1):
            tail = F.log_softmax(self._logits(hidden, *self._cluster(k, emb)), dim=-1)
            parts.append(head[:, cut0 + k - 1 : cut0 + k] + tail)
        return torch.cat(parts, dim=-1)

    def forward(self, hidden: torch.Tensor, target: torch.Tensor, emb: AdaptiveEmbedding | None = None):
        """Negative log-likelihood of each target: hidden [N, D], target [N] -> nll [N] (nats).

        Tail clusters are evaluated only on the rows whose target lies in them.

        Raises:
            ValueError: hidden and target of different lengths.
        """
        if hidden.shape[0] != target.shape[0]:
            raise ValueError(f"hidden has {hidden.shape[0]} rows and target {target.shape[0]}")
        head = self._head(hidden, emb)
        cut0 = self.cutoff_ends[1]
        nll = torch.zeros(target.shape[0], dtype=hidden.dtype, device=hidden.device)
        in_head = target < cut0
        idx = in_head.nonzero(as_tuple=True)[0]
        nll = nll.index_add(0, idx, -head[idx, target[idx]])
        for k in range(1, self.n_clusters + 1):
            lo, hi = self.cutoff_ends[k], self.cutoff_ends[k + 1]
            idx = ((target >= lo) & (target < hi)).nonzero(as_tuple=True)[0]
            if idx.numel() == 0:
                continue
            tail = F.log_softmax(self._logits(hidden[idx], *self._cluster(k, emb)), dim=-1)
            lp = head[idx, cut0 + k - 1] + tail.gather(1, (target[idx] - lo)[:, None]).squeeze(1)
            nll = nll.index_add(0, idx, -lp)
        return nll
