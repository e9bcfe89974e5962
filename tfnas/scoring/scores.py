"""Scores of matrices that the metrics of every family share (docs/METRICS.md, "Shared building blocks").

* :func:`covariance_score` — NASWOT v1's score of a correlation matrix
  (Mellor et al. 2021, v1 eq. 2): ``S = −Σ_i [ln(λ_i + k) + 1/(λ_i + k)]``.
* :func:`cosine_score` — the paper's cosine variant (Serianni & Kalita 2023).
* :func:`layer_covariances` — the paper's hidden covariance, S of each
  layer's states (Serianni & Kalita 2023, §3.1), for any family.
* :func:`logdet` — ``log|det K|`` (NASWOT v2 / activation distance).
* :class:`NaswotKernel` — NASWOT's kernel K of binary activation codes
  (Mellor et al. 2021), accumulated over calls.

The scores compute in float64 and raise :class:`UndefinedScore` (recorded as
NaN with the reason) when the value does not exist.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from tfnas.scoring.api import UndefinedScore

#: Regulariser of the covariance score (NASWOT v1).
COVARIANCE_K = 1e-5

# The linear algebra runs in torch (float64, on the input's device, so a GPU
# run never copies activations to the host): its LAPACK honours
# torch.set_num_threads, whereas NumPy/SciPy's threaded OpenBLAS can stall on
# small shared machines (a 128×128 Cholesky measured at 0.2 s there).


def _as_float64_matrix(
    m: torch.Tensor | np.ndarray, what: str, check_finite: bool = True, copy: bool = False
) -> torch.Tensor:
    a = torch.as_tensor(m.detach() if isinstance(m, torch.Tensor) else np.asarray(m))
    # The layout is kept: a transposed view (e.g. hidden states [hidden, steps·batch])
    # converts as one streaming pass, and the BLAS products read either layout.
    a = a.to(torch.float64, copy=copy)
    if a.dim() != 2:
        raise ValueError(f"{what} needs a 2-D matrix, got shape {tuple(a.shape)}")
    if a.shape[0] < 2 or a.shape[1] < 2:
        raise UndefinedScore(f"{what}: matrix {tuple(a.shape)} needs at least 2 rows and 2 columns")
    if check_finite:
        finite = torch.isfinite(a)
        if not finite.all():
            raise UndefinedScore(f"{what}: matrix has {int((~finite).sum())} non-finite entries")
    return a


def _gram(a: torch.Tensor, blocks: int = 3) -> torch.Tensor:
    """``a @ a.T`` [rows, rows], computing only the lower block triangle and mirroring it.

    torch has no symmetric rank-k product (BLAS syrk); row block i times the
    rows up to block i's end does 2/3 of a full product's work at 3 blocks,
    entry for entry the same dot products.
    """
    n = a.shape[0]
    if n < 64 * blocks:
        return a @ a.T
    g = a.new_empty(n, n)
    edges = [round(i * n / blocks) for i in range(blocks + 1)]
    for lo, hi in zip(edges, edges[1:]):
        part = a[lo:hi] @ a[:hi].T  # [hi - lo, hi]
        g[lo:hi, :hi] = part
        g[:lo, lo:hi] = part[:, :lo].T
    return g


def correlation(m: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Pearson correlation matrix of the rows of ``m`` [rows, cols]: float64 tensor [rows, rows].

    Computed from the Gram matrix of the centred rows (the cost that matters
    for [600, 3500] hidden states; its lower block triangle only, see
    :func:`_gram`), normalised by its diagonal; few passes over the input
    keep it cheap next to a forward pass.

    Raises:
        UndefinedScore: constant rows (zero variance), non-finite entries, or
            fewer than 2 rows or columns.
    """
    a = _as_float64_matrix(m, "correlation", check_finite=False, copy=True)
    mean = a.mean(dim=1, keepdim=True)
    gram = _gram(a.sub_(mean))  # in place: ``a`` is our own copy
    # A non-finite entry makes its row's mean, and so its diagonal entry, non-finite;
    # finite diagonals bound every other entry (Cauchy-Schwarz).
    if not torch.isfinite(torch.diagonal(gram)).all():
        bad = int((~torch.isfinite(a)).any(dim=1).sum())
        raise UndefinedScore(
            f"correlation: {bad} of {a.shape[0]} rows have non-finite entries"
            if bad
            else "correlation: Gram matrix overflows float64"
        )
    var = torch.diagonal(gram).clone()  # n · variance of each row
    n = a.shape[1]
    # A row is constant when its spread is at round-off level relative to its RMS value.
    rms2 = mean.squeeze(1).square() + var / n
    constant = var <= 1e-24 * rms2.clamp_min(torch.finfo(torch.float64).tiny) * n
    if constant.any():
        raise UndefinedScore(
            f"{int(constant.sum())} of {a.shape[0]} rows are constant (zero variance): correlation undefined"
        )
    inv = var.rsqrt()
    c = gram.mul_(inv[:, None]).mul_(inv[None, :])  # in place: the Gram matrix is ours
    return c.add(c.T).mul_(0.5)  # exactly symmetric


def covariance_score(m: torch.Tensor | np.ndarray, k: float = COVARIANCE_K) -> float:
    """NASWOT v1 score of the row correlation of ``m``: ``−Σ_i [ln(λ_i + k) + 1/(λ_i + k)]``.

    λ are the eigenvalues of the Pearson correlation matrix C of the rows
    (variables) of ``m`` over its columns (observations). With A = C + kI
    positive definite, ``Σ ln(λ+k) = logdet A`` and ``Σ 1/(λ+k) = trace A⁻¹``
    are read from a Cholesky factor A = L Lᵀ (``2 Σ ln L_ii`` and ``‖L⁻¹‖_F²``),
    avoiding an eigendecomposition; if the factorisation fails, the symmetric
    eigenvalues are used (tiny negative λ clipped to 0). Higher is better.

    Args:
        m: [rows, cols] matrix (tensor or array), any float dtype; computed in float64.
        k: regulariser (1e-5).

    Returns:
        The score as a Python float.

    Raises:
        UndefinedScore: a constant row (the message says how many), non-finite
            entries, or fewer than 2 rows or columns.
    """
    c = correlation(m)
    c.diagonal().add_(k)  # A = C + kI, in place: ``c`` is ours
    chol, info = torch.linalg.cholesky_ex(c)
    if int(info) == 0:
        eye = torch.eye(c.shape[0], dtype=torch.float64, device=c.device)
        inv_chol = torch.linalg.solve_triangular(chol, eye, upper=False)
        log_sum = 2.0 * torch.log(torch.diagonal(chol)).sum()
        inv_sum = inv_chol.square().sum()
    else:
        lam = (torch.linalg.eigvalsh(c) - k).clamp_min(0.0)
        log_sum = torch.log(lam + k).sum()
        inv_sum = (1.0 / (lam + k)).sum()
    return float(-(log_sum + inv_sum))


def layer_covariances(
    states: Sequence[torch.Tensor], prefix: str, max_layers: int | None = None, summaries: bool = False
) -> dict[str, float | UndefinedScore]:
    """The hidden covariance of each layer: ``{f"{prefix}_l{i}": S(H_i)}`` (Serianni & Kalita 2023, §3.1).

    H_i = layer i's states arranged [features, observations] (rows are the
    hidden units; every other axis, e.g. time steps and samples, gives the
    observations). A layer whose states are exactly zero, have a constant
    unit or overflow gets an :class:`UndefinedScore` with the reason; the
    other layers keep their scores.

    Args:
        states: one tensor per layer, [..., features].
        prefix: the score names' stem (``hidden_covariance``).
        max_layers: the family's deepest model: layers past this model's depth
            up to it are undefined ("the model has n layers"), so every model
            of a family has the same score names.
        summaries: also ``{prefix}_last`` (the last layer's score) and
            ``{prefix}_mean`` (the mean of the defined layer scores), which
            compare models of different depths.

    Returns:
        Score name -> its value or the reason it is undefined.
    """
    scores: dict[str, float | UndefinedScore] = {}
    for i, h in enumerate(states, start=1):
        flat = h.reshape(-1, h.shape[-1]).t()
        try:
            if not torch.any(flat):
                raise UndefinedScore(f"layer {i} hidden state is exactly zero everywhere: correlation undefined")
            scores[f"{prefix}_l{i}"] = covariance_score(flat)
        except UndefinedScore as exc:
            if "non-finite" in exc.reason:  # say where: the states blew up in the forward
                exc = UndefinedScore(f"layer {i} hidden state overflows float32 in the forward ({exc.reason})")
            scores[f"{prefix}_l{i}"] = exc
    per_layer = list(scores.values())
    for i in range(len(states) + 1, (max_layers or 0) + 1):
        scores[f"{prefix}_l{i}"] = UndefinedScore(f"the model has {len(states)} layers")
    if summaries:
        defined = [v for v in per_layer if not isinstance(v, UndefinedScore)]
        scores[f"{prefix}_last"] = per_layer[-1] if per_layer else UndefinedScore("the model has no layer")
        scores[f"{prefix}_mean"] = (
            sum(defined) / len(defined) if defined else UndefinedScore("no layer has a defined hidden covariance")
        )
    return scores


def cosine_score(m: torch.Tensor | np.ndarray) -> float:
    """Cosine score of the rows of ``m`` [n, d] (Serianni & Kalita 2023):
    ``1 − Σ_ij A_ij^(1/20) / (2 (n² − n))``, A = |cosine similarity of rows| with zero diagonal.

    Args:
        m: [n, d] matrix, n ≥ 2; computed in float64.

    Returns:
        The score as a Python float (1 for mutually orthogonal rows, 0.5 for identical ones).

    Raises:
        UndefinedScore: a zero row (cosine undefined; the message says how many),
            non-finite entries, or fewer than 2 rows or columns.
    """
    a = _as_float64_matrix(m, "cosine score")
    norms = a.norm(dim=1)
    zero = norms == 0
    if zero.any():
        raise UndefinedScore(f"{int(zero.sum())} of {a.shape[0]} rows are zero: cosine similarity undefined")
    unit = a / norms[:, None]
    sim = (unit @ unit.T).abs().clamp_max(1.0)
    sim.fill_diagonal_(0.0)  # exactly 0: round-off on the diagonal would survive the 1/20 power
    n = a.shape[0]
    return float(1.0 - sim.pow(1.0 / 20).sum() / (2 * (n * n - n)))


def logdet(k: torch.Tensor | np.ndarray) -> float:
    """``log|det K|`` of a square matrix via a sign-aware LU (``slogdet``), in float64.

    Raises:
        ValueError: ``k`` is not square.
        UndefinedScore: ``K`` is singular (determinant 0) or has non-finite entries.
    """
    k = torch.as_tensor(k.detach() if isinstance(k, torch.Tensor) else np.asarray(k)).to("cpu", torch.float64)
    if k.dim() != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(f"logdet needs a square matrix, got shape {tuple(k.shape)}")
    if not torch.isfinite(k).all():
        raise UndefinedScore("logdet: matrix has non-finite entries")
    sign, value = torch.linalg.slogdet(k)
    if sign == 0 or not torch.isfinite(value):
        raise UndefinedScore(f"logdet: the {k.shape[0]}×{k.shape[0]} kernel matrix is singular")
    return float(value)


class NaswotKernel:
    """NASWOT's K = Σ c cᵀ + (1−c)(1−c)ᵀ [batch, batch], accumulated over calls of activation units.

    K_ij counts the code bits on which samples i and j agree (Mellor et al.
    2021). Each call adds code bits c [batch, n] (bool); an optional validity
    mask [batch, n] (bool) drops bits that are padding: for those, only pairs
    where both bits are valid count. Without a mask a call adds
    2 c cᵀ − r 1ᵀ − 1 rᵀ + n (r = each sample's count of ones), one product.
    0/1 products summed over n < 2^24 terms are exact in float32; the running
    total is float64, so K is exact.

    Attributes:
        kernel: K, float64 [batch, batch]; None before the first call.
        bits: total number of code bits per sample.
    """

    def __init__(self) -> None:
        self.kernel: torch.Tensor | None = None
        self.bits = 0

    def add(self, codes: torch.Tensor, valid: torch.Tensor | None = None) -> None:
        """Add one call's codes ``codes`` [batch, n] (bool) and its validity mask (or None)."""
        c = codes.reshape(codes.shape[0], -1)
        n = c.shape[1]
        dtype = torch.float32 if n < 2**24 else torch.float64
        on = c.to(dtype)
        if valid is None:
            cc = (on @ on.t()).double()
            r = torch.diagonal(cc)  # c² = c, so the diagonal counts each sample's ones
            k = 2.0 * cc - r[:, None] - r[None, :] + n
        else:
            v = valid.reshape(c.shape).to(dtype)
            off = (1.0 - on) * v
            on = on * v
            k = (on @ on.t()).double() + (off @ off.t()).double()
        self.kernel = k if self.kernel is None else self.kernel + k
        self.bits += n
