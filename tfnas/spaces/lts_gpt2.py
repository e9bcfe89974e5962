"""The LiteTransformerSearch GPT-2 space: heterogeneous decoder-only transformers.

LiteTransformerSearch (LTS; Javaheripi et al., NeurIPS 2022) trained 200
random GPT-2 architectures on WikiText-103 and 200 on LM1B and published
their configurations, perplexities and parameter counts (archai,
branch ``neurips-lts``, ``archai/nlp/nas/saved_logs``; MIT). A set's folder
``random_GPT2_<set>/`` holds

- ``config_<c>/j<j>/model_config.yaml``: one architecture (``n_layer``,
  ``d_model``, ``d_embed``, per-layer ``n_head`` and ``d_inner``,
  ``div_val``, ``cutoffs``, ``tie_projs``, ...), c = 0..19, j = 0..9;
- ``ppl_summary.yaml``: per ``config_<c>_j<j>``, ``valid_ppl``, ``test_ppl``
  (token-level perplexities after training) and ``train_elapsed`` (s);
- ``params_summary.yaml``: per ``config_<c>_j<j>``, parameter counts
  ``AdaEmb``, ``Attn``, ``FFN``, ``nonembedding``, ``total``.

Reader conventions: entries are ordered by config index, then j, both
numerically, so ``arch=i`` always names the same architecture. An entry
without a perplexity in ``ppl_summary.yaml`` is kept (dropping it would
shift every later index), with an empty ``truth`` and
``meta["missing_ppl"] = True``. ``truth`` holds ``valid_ppl`` (the ground
truth, lower is better), ``test_ppl`` and their natural logs
``valid_loss`` / ``test_loss`` (nats per token). ``meta`` holds the key
``config_<c>_j<j>``, ``train_elapsed`` and the set's parameter counts
(``params``).

The parameter counts of ``params_summary.yaml`` equal those of the GPT-2
decoder (:mod:`tfnas.models.lts_gpt2`) for every WikiText-103 architecture.
The LM1B set's counts describe the Transformer-XL layout of the same
configuration instead (relative-position attention with ``r_net``, no
attention biases, per-layer ``r_w_bias``/``r_r_bias``, no learned positions
and no final LayerNorm); :func:`transformer_xl_counts` reproduces them and
the tests pin the exact difference.

Generated configurations draw from the choices of the LTS paper's GPT-2
space (:data:`CHOICES`); every benchmark configuration lies inside them.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Mapping

import numpy as np
import torch
import yaml
from torch import nn

from tfnas.models.adaptive import AdaptiveEmbedding, ProjectedAdaptiveLogSoftmax
from tfnas.models.lts_gpt2 import LtsGpt2Config, LtsGpt2LMHeadModel, parameter_counts
from tfnas.paths import default_data_dir
from tfnas.spaces.base import Architecture, SearchSpace, check_index

#: The two published sets: name -> folder under ``saved_logs``.
SETS = {"wt103": "random_GPT2_wt103", "lm1b": "random_GPT2_lm1b"}

#: How to get the folder without the data directory (printed when it is missing).
DOWNLOAD_HINT = (
    "get LTS's saved_logs from github.com/microsoft/archai (branch neurips-lts): "
    "git clone --depth 1 --branch neurips-lts https://github.com/microsoft/archai.git && "
    "mkdir -p $TFNAS_DATA_DIR/lts && cp -r archai/archai/nlp/nas/saved_logs $TFNAS_DATA_DIR/lts/"
)

_KEY = re.compile(r"^config_(\d+)_j(\d+)$")


@dataclass(frozen=True)
class Choices:
    """The values one set's architectures are drawn from (LTS paper, GPT-2 search space).

    Attributes:
        n_layer: allowed depths.
        d_model: allowed widths.
        d_embed: allowed adaptive-embedding widths (−1: the same as d_model).
        div_val: allowed adaptive-embedding divisors.
        n_head: allowed heads per layer.
        d_inner: inclusive range of the inner size per layer, drawn uniformly.
        fixed: fields every configuration of the set shares (vocabulary,
            cutoffs, tying, positions, dropout, init).
    """

    n_layer: tuple[int, ...]
    d_model: tuple[int, ...]
    d_embed: tuple[int, ...]
    div_val: tuple[int, ...]
    n_head: tuple[int, ...]
    d_inner: tuple[int, int]
    fixed: Mapping[str, Any]

    def sample(self, rng: np.random.Generator) -> dict:
        """Draw one configuration: depth, width, embedding width, divisor, then per layer heads and inner size.

        Returns:
            A ``model_config.yaml``-style dict (the fixed fields included).
        """
        def pick(values):
            return values[int(rng.integers(len(values)))]

        n_layer = pick(self.n_layer)
        cfg = dict(self.fixed)
        cfg.update(n_layer=n_layer, d_model=pick(self.d_model), d_embed=pick(self.d_embed), div_val=pick(self.div_val))
        cfg["n_head"] = [pick(self.n_head) for _ in range(n_layer)]
        cfg["d_inner"] = [int(rng.integers(self.d_inner[0], self.d_inner[1] + 1)) for _ in range(n_layer)]
        return cfg

    def contains(self, cfg: Mapping[str, Any]) -> bool:
        """Whether ``cfg`` is one of the configurations :meth:`sample` can draw."""
        lo, hi = self.d_inner
        return (
            cfg["n_layer"] in self.n_layer
            and cfg["d_model"] in self.d_model
            and cfg["d_embed"] in self.d_embed
            and cfg["div_val"] in self.div_val
            and len(cfg["n_head"]) == len(cfg["d_inner"]) == cfg["n_layer"]
            and all(h in self.n_head for h in cfg["n_head"])
            and all(lo <= d <= hi for d in cfg["d_inner"])
            and all(cfg.get(k) == v for k, v in self.fixed.items())
        )


_COMMON_FIXED = {
    "n_token": 50264, "d_head": -1, "adaptive": True, "tie_weight": True, "dropout": 0.1, "dropatt": 0.0,
    "pre_lnorm": False, "weight_init_std": 0.02, "proj_init_std": 0.01,
}  # fmt: skip

#: Per set: the LTS GPT-2 search space (n_layer 2–16, n_head 2/4/8, d_inner 512–2048,
#: div_val 1/2/4; WikiText-103 also searches d_embed) and the set's fixed fields.
CHOICES: dict[str, Choices] = {
    "wt103": Choices(
        n_layer=tuple(range(2, 17)), d_model=(64, 128, 256, 512), d_embed=(128, 256, 512), div_val=(1, 2, 4),
        n_head=(2, 4, 8), d_inner=(512, 2048),
        fixed={**_COMMON_FIXED, "tgt_len": 192, "cutoffs": [19997, 39997, 199997, 50264],
               "tie_projs": [False, True, True, True]},
    ),
    "lm1b": Choices(
        n_layer=tuple(range(2, 17)), d_model=(128, 256, 512), d_embed=(-1,), div_val=(1, 2, 4),
        n_head=(2, 4, 8), d_inner=(512, 2048),
        fixed={**_COMMON_FIXED, "tgt_len": 32, "cutoffs": [59997, 99997, 639997, 50264],
               "tie_projs": [False, False, False, False]},
    ),
}  # fmt: skip


#: The fields of a normalised spec: what builds the decoder (sizes, tying, dropout, init).
SPEC_FIELDS = (
    "n_token", "tgt_len", "d_model", "d_embed", "n_layer", "n_head", "d_head", "d_inner", "div_val", "cutoffs",
    "tie_weight", "tie_projs", "dropout", "dropatt", "pre_lnorm", "weight_init_std", "proj_init_std",
)  # fmt: skip


def normalize_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """An LTS ``model_config`` in the normalised form of :attr:`Architecture.spec`.

    The decoder's configuration (:meth:`LtsGpt2Config.from_lts`) restricted
    to :data:`SPEC_FIELDS`, with every default resolved: ``d_embed`` −1 →
    ``d_model``, per-layer ``n_head`` / ``d_head`` / ``d_inner`` lists,
    cleaned ``cutoffs`` and ``tie_projs`` (one per cluster). Two
    configurations that build the same decoder have the same normal form.

    Raises:
        ValueError: a configuration the decoder cannot build (the message says why).
    """
    cfg = LtsGpt2Config.from_lts(config)
    return {k: getattr(cfg, k) for k in SPEC_FIELDS}


def default_set_dir(which: str) -> Path:
    """``<data_dir>/lts/saved_logs/random_GPT2_<which>``."""
    if which not in SETS:
        raise ValueError(f"unknown LTS set {which!r}; expected one of {list(SETS)}")
    return default_data_dir() / "lts" / "saved_logs" / SETS[which]


def _load_yaml(path: Path) -> Any:
    with open(path) as f:
        return yaml.safe_load(f)


@lru_cache(maxsize=8)
def _read_set(folder: str) -> tuple[Architecture, ...]:
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"LTS set folder not found: {root}; {DOWNLOAD_HINT}")
    ppl = _load_yaml(root / "ppl_summary.yaml") if (root / "ppl_summary.yaml").is_file() else {}
    params = _load_yaml(root / "params_summary.yaml") if (root / "params_summary.yaml").is_file() else {}
    found = []
    for path in root.glob("config_*/j*/model_config.yaml"):
        key = f"{path.parent.parent.name}_{path.parent.name}"
        m = _KEY.match(key)
        if m is None:
            continue
        found.append(((int(m.group(1)), int(m.group(2))), key, path))
    if not found:
        raise FileNotFoundError(f"{root}: no config_*/j*/model_config.yaml; {DOWNLOAD_HINT}")
    archs = []
    for i, (_, key, path) in enumerate(sorted(found)):
        raw = _load_yaml(path)
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: expected a mapping, got {type(raw).__name__}")
        try:
            spec = normalize_config(raw)
        except ValueError as exc:  # a clear error now rather than at scoring time
            raise ValueError(f"{path}: {exc}") from None
        entry = (ppl or {}).get(key) or {}
        truth: dict[str, float] = {}
        if entry.get("valid_ppl") is not None:
            for split in ("valid", "test"):
                if entry.get(f"{split}_ppl") is not None:
                    value = float(entry[f"{split}_ppl"])
                    truth[f"{split}_ppl"] = value
                    truth[f"{split}_loss"] = math.log(value) if value > 0 else math.nan
        meta = {
            "key": key,
            "model_config": raw,
            "missing_ppl": "valid_ppl" not in truth,
            "train_elapsed": entry.get("train_elapsed"),
            "params": {k: int(v) for k, v in ((params or {}).get(key) or {}).items()},
        }
        archs.append(Architecture(index=i, benchmark_id=key, spec=spec, truth=truth, meta=meta))
    return tuple(archs)


def read_set(folder: str | Path) -> list[Architecture]:
    """Read one LTS set folder (cached per path); see the module docstring for the conventions.

    Args:
        folder: ``.../saved_logs/random_GPT2_<set>``.

    Returns:
        One :class:`Architecture` per ``model_config.yaml``: ``benchmark_id``
        ``config_<c>_j<j>``, ``spec`` its :func:`normalize_config` form,
        ``truth`` and ``meta`` as in the module docstring (``meta["model_config"]``
        the parsed YAML). The objects are shared between calls:
        do not mutate them.

    Raises:
        FileNotFoundError: no folder or no configurations (the message says where to get them).
        ValueError: a configuration the decoder cannot build (names the file).
    """
    return list(_read_set(str(Path(folder).resolve())))


class ConfigGenerator:
    """Reproducible stream of random configurations of one set's space.

    Args:
        which: ``"wt103"`` or ``"lm1b"`` (see :data:`CHOICES`).
        seed: seed of the NumPy ``default_rng`` behind the stream.
    """

    def __init__(self, which: str = "wt103", seed: int = 0):
        if which not in CHOICES:
            raise ValueError(f"unknown LTS set {which!r}; expected one of {list(CHOICES)}")
        self.choices = CHOICES[which]
        self._rng = np.random.default_rng(seed)

    def __call__(self) -> dict:
        return self.choices.sample(self._rng)

    def take(self, n: int) -> list[dict]:
        """The next ``n`` configurations."""
        return [self() for _ in range(n)]


def transformer_xl_counts(spec: Mapping[str, Any]) -> dict[str, int]:
    """Parameter counts of the Transformer-XL layout of ``spec``, as LTS's LM1B ``params_summary.yaml`` has them.

    Per layer: attention ``qkv`` (3·D·h·d), ``r_net`` (D·h·d) and output
    (h·d·D) without biases plus its LayerNorm (2D); the feed-forward core
    (2·D·F + F + D) and its LayerNorm (2D); ``r_w_bias`` and ``r_r_bias``
    (h·d each). No learned positions, no final LayerNorm; the adaptive
    embedding and softmax as in the GPT-2 decoder.

    Returns:
        ``{"AdaEmb", "Attn", "FFN", "nonembedding", "total"}``.
    """
    config = LtsGpt2Config.from_lts(spec)
    with torch.device("meta"):
        ada = sum(p.numel() for p in AdaptiveEmbedding(config).parameters())
        softmax = sum(p.numel() for p in ProjectedAdaptiveLogSoftmax(config).parameters())  # owns no tied table
    d = config.d_model
    attn = sum(5 * d * h * dh + 2 * d for h, dh in zip(config.n_head, config.d_head))
    ffn = sum(2 * d * f + f + d for f in config.d_inner)
    nonemb = attn + ffn + sum(2 * d + 2 * h * dh for h, dh in zip(config.n_head, config.d_head))
    return {"AdaEmb": ada, "Attn": attn, "FFN": ffn, "nonembedding": nonemb, "total": ada + nonemb + softmax}


class LtsGpt2Space(SearchSpace):
    """One LTS GPT-2 set as a search space: benchmark architectures and/or generated ones, by index.

    Use :class:`LtsGpt2Wt103` or :class:`LtsGpt2Lm1b` (``space=lts_gpt2_wt103``
    / ``space=lts_gpt2_lm1b``); they differ in their data folder, name and
    the generator's choices.

    - ``benchmark`` a set folder: its architectures (:func:`read_set`), then
      ``generate`` random configurations appended after them.
    - ``benchmark=None`` (or ``""``) and ``generate=N > 0``: only the N generated ones.
    - ``benchmark=None`` and ``generate=0``: the data folder's set.

    Generated architecture ``j`` is configuration ``j`` of
    ``ConfigGenerator(which, generator_seed)``: ``benchmark_id`` None, empty
    ``truth``, ``meta["name"] = "gen-<seed>-<j>"`` and its ``model_config``.

    Args:
        benchmark: the set folder (see above).
        generate: number of generated configurations.
        generator_seed: seed of the generator.
        block_layout: the decoder's LayerNorm placement
            (:data:`tfnas.models.lts_gpt2.BLOCK_LAYOUTS`; ``"gpt2"`` is what LTS trained).

    Raises:
        ValueError: an unknown layout, or a negative ``generate``.
    """

    name: ClassVar[str] = "lts_gpt2"
    family: ClassVar[str] = "gpt"
    metric_space: ClassVar[str] = "gpt"  # the former name of `family`
    which: ClassVar[str] = ""

    def __init__(
        self,
        benchmark: str | Path | None = None,
        generate: int = 0,
        generator_seed: int = 0,
        block_layout: str = "gpt2",
    ):
        if self.which not in SETS:
            raise TypeError("use LtsGpt2Wt103 or LtsGpt2Lm1b (the set decides the data and the choices)")
        if isinstance(generate, bool) or not isinstance(generate, int) or generate < 0:
            raise ValueError(f"generate must be an int >= 0, got {generate!r}")
        LtsGpt2Config(block_layout=block_layout)  # validates the layout name
        self.block_layout = block_layout
        if benchmark is None and generate == 0:
            benchmark = default_set_dir(self.which)
        self.benchmark = None if benchmark in (None, "") else str(Path(benchmark).resolve())
        archs = read_set(self.benchmark) if self.benchmark else []
        start = len(archs)
        for j, raw in enumerate(ConfigGenerator(self.which, generator_seed).take(generate)):
            meta = {"name": f"gen-{generator_seed}-{j}", "model_config": raw}
            archs.append(Architecture(index=start + j, benchmark_id=None, spec=normalize_config(raw), meta=meta))
        self._archs = archs

    def __len__(self) -> int:
        return len(self._archs)

    def __getitem__(self, index: int) -> Architecture:
        check_index(index, len(self), f"{self.name} ({len(self)} architectures)")
        a = self._archs[index]
        return Architecture(a.index, a.benchmark_id, copy.deepcopy(a.spec), dict(a.truth), copy.deepcopy(a.meta))

    def normalize(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """``spec`` in normal form (:func:`normalize_config`), the set's fixed fields filled in where it has none.

        So ``{"n_layer": 2, "d_model": 64, "d_embed": 128, "div_val": 4,
        "n_head": [2, 8], "d_inner": [900, 1500]}`` names a WikiText-103
        architecture with the set's vocabulary, cutoffs, tying and positions.

        Raises:
            ValueError: ``spec`` is not a mapping or cannot be built.
        """
        if not isinstance(spec, Mapping):
            raise ValueError(f"an LTS GPT-2 architecture is a mapping of model_config fields, got {type(spec).__name__}")
        return normalize_config({**CHOICES[self.which].fixed, **spec})

    def config(self, arch: Architecture, **overrides: Any) -> LtsGpt2Config:
        """The decoder configuration of ``arch`` (``overrides`` replace its fields, e.g. ``dropout=0``)."""
        return LtsGpt2Config.from_lts(arch.spec, block_layout=self.block_layout, **overrides)

    def build(self, arch: Architecture, seed: int = 0, **overrides: Any) -> nn.Module:
        """Construct the untrained decoder of ``arch``, torch's generator seeded with ``seed`` just before.

        Returns:
            A :class:`~tfnas.models.lts_gpt2.LtsGpt2LMHeadModel` on CPU in train mode.
        """
        config = self.config(arch, **overrides)
        torch.manual_seed(seed)
        return LtsGpt2LMHeadModel(config)

    def num_params(self, arch: Architecture) -> dict[str, int]:
        """Parameters of ``arch``'s decoder by part (:func:`~tfnas.models.lts_gpt2.parameter_counts`), on the meta device."""
        with torch.device("meta"):
            return parameter_counts(LtsGpt2LMHeadModel(self.config(arch)))


class LtsGpt2Wt103(LtsGpt2Space):
    """The 200 GPT-2 architectures LTS trained on WikiText-103 (``space=lts_gpt2_wt103``)."""

    name: ClassVar[str] = "lts_gpt2_wt103"
    which: ClassVar[str] = "wt103"


class LtsGpt2Lm1b(LtsGpt2Space):
    """The 200 GPT-2 architectures LTS trained on LM1B (``space=lts_gpt2_lm1b``)."""

    name: ClassVar[str] = "lts_gpt2_lm1b"
    which: ClassVar[str] = "lm1b"


#: Set name -> its space class.
SPACES: dict[str, type[LtsGpt2Space]] = {"wt103": LtsGpt2Wt103, "lm1b": LtsGpt2Lm1b}
