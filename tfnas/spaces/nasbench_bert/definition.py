"""The NAS-Bench-BERT search space definition (``search_space.json``) and random configurations.

:class:`SpaceDefinition` holds the allowed values of every field, validates a
configuration against them and draws one uniformly; :class:`ConfigGenerator`
is a reproducible stream of such draws.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from tfnas.paths import default_data_dir

#: Fields of one encoder layer in a spec.
LAYER_FIELDS = (
    "operation_type",
    "operation_parameter",
    "num_operation_heads",
    "feed_forward_dimension",
    "num_feed_forward",
)


def default_search_space_path() -> Path:
    """``<data_dir>/nasbench_bert/search_space.json``."""
    return default_data_dir() / "nasbench_bert" / "search_space.json"


@dataclass(frozen=True)
class SpaceDefinition:
    """The NAS-Bench-BERT search space, as ``search_space.json`` defines it.

    Attributes:
        hidden_sizes: allowed ``hidden_size`` values (128, 256).
        num_layers: allowed numbers of encoder layers (2, 4).
        operation_parameters: operation type -> its allowed parameters
            (``SA``: SDP/WMA, ``LT``: DFT/DCT, ``DSC``: kernel sizes 5/9).
        num_operation_heads: allowed heads per layer (2, 4).
        feed_forward_dimensions: allowed feed-forward sizes (512, 1024).
        num_feed_forwards: allowed numbers of stacked feed-forward layers (1, 3).
    """

    hidden_sizes: tuple[int, ...]
    num_layers: tuple[int, ...]
    operation_parameters: Mapping[str, tuple]
    num_operation_heads: tuple[int, ...]
    feed_forward_dimensions: tuple[int, ...]
    num_feed_forwards: tuple[int, ...]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "search space") -> "SpaceDefinition":
        """Parse the JSON object of ``search_space.json``.

        Raises:
            ValueError: a missing or malformed entry, named with ``where``.
        """
        try:
            layer = d["encoder_layer"]
            ops = tuple(str(o) for o in layer["operation_type"])
            params = {}
            for op in ops:
                # DSC parameters are kernel sizes: keep them as ints, the others as names.
                params[op] = tuple(as_int(p, f"{where}: {op} parameter") if op == "DSC" else str(p) for p in layer[op])
            return cls(
                hidden_sizes=tuple(as_int(v, f"{where}: hidden_size") for v in d["hidden_size"]),
                num_layers=tuple(as_int(v, f"{where}: num_encoder_layers") for v in d["num_encoder_layers"]),
                operation_parameters=params,
                num_operation_heads=tuple(
                    as_int(v, f"{where}: num_operation_heads") for v in layer["num_operation_heads"]
                ),
                feed_forward_dimensions=tuple(
                    as_int(v, f"{where}: feed_forward_dimension") for v in layer["feed_forward_dimension"]
                ),
                num_feed_forwards=tuple(as_int(v, f"{where}: num_feed_forward") for v in layer["num_feed_forward"]),
            )
        except KeyError as exc:
            raise ValueError(f"{where}: missing key {exc.args[0]!r}") from None
        except TypeError as exc:
            raise ValueError(f"{where}: malformed ({exc})") from None

    def validate(self, raw: Mapping[str, Any], where: str) -> dict:
        """Check one configuration against the space and return its normalised spec.

        Args:
            raw: ``{"hidden_size": ..., "layers": [layer dict, ...]}``; also
                accepts the benchmark's ``{"hidden_size", "nas_config":
                {"encoder_layers": [...]}}`` form.
            where: names the configuration in error messages (e.g. "entry 17 (id 17)").

        Returns:
            The spec with ints for sizes, counts and DSC kernels, and str names.

        Raises:
            ValueError: naming ``where`` and the offending field and value.
        """
        if not isinstance(raw, Mapping):
            raise ValueError(f"{where}: configuration must be a dict, got {type(raw).__name__}")
        if "layers" in raw:
            layers = raw["layers"]
        elif "nas_config" in raw:
            layers = (raw["nas_config"] or {}).get("encoder_layers")
        else:
            raise ValueError(f"{where}: no 'layers' (or 'nas_config.encoder_layers') in the configuration")
        if "hidden_size" not in raw:
            raise ValueError(f"{where}: no 'hidden_size' in the configuration")
        hidden = as_int(raw["hidden_size"], f"{where}: hidden_size")
        if hidden not in self.hidden_sizes:
            raise ValueError(f"{where}: hidden_size={hidden} is not in the search space {list(self.hidden_sizes)}")
        if not isinstance(layers, (list, tuple)):
            raise ValueError(f"{where}: the layer list must be a list, got {type(layers).__name__}")
        if len(layers) not in self.num_layers:
            raise ValueError(
                f"{where}: {len(layers)} encoder layers; the search space allows {list(self.num_layers)}"
            )
        return {
            "hidden_size": hidden,
            "layers": [self._layer(lay, f"{where}, layer {i}") for i, lay in enumerate(layers)],
        }

    def _layer(self, lay: Any, where: str) -> dict:
        if not isinstance(lay, Mapping):
            raise ValueError(f"{where}: must be a dict, got {type(lay).__name__}")
        missing = [f for f in LAYER_FIELDS if f not in lay]
        extra = [f for f in lay if f not in LAYER_FIELDS]
        if missing or extra:
            raise ValueError(
                f"{where}: missing fields {missing}, unknown fields {extra}; expected {list(LAYER_FIELDS)}"
            )
        op = lay["operation_type"]
        if op not in self.operation_parameters:
            raise ValueError(f"{where}: operation_type={op!r} is not one of {list(self.operation_parameters)}")
        allowed = self.operation_parameters[op]
        param = lay["operation_parameter"]
        param = as_int(param, f"{where}: operation_parameter") if op == "DSC" else param
        if param not in allowed:
            raise ValueError(
                f"{where}: operation_parameter={param!r} is not valid for {op}; expected one of {list(allowed)}"
            )
        out = {"operation_type": str(op), "operation_parameter": param}
        for field, choices in (
            ("num_operation_heads", self.num_operation_heads),
            ("feed_forward_dimension", self.feed_forward_dimensions),
            ("num_feed_forward", self.num_feed_forwards),
        ):
            v = as_int(lay[field], f"{where}: {field}")
            if v not in choices:
                raise ValueError(f"{where}: {field}={v} is not in the search space {list(choices)}")
            out[field] = v
        return out

    def sample(self, rng: np.random.Generator) -> dict:
        """Draw one configuration uniformly, field by field.

        The number of layers, the hidden size, and per layer the operation
        type, its parameter, heads, feed-forward size and count are each drawn
        uniformly and independently from their allowed values, in that order.

        Returns:
            A normalised spec (see :meth:`validate`).
        """
        def pick(choices):
            return choices[int(rng.integers(len(choices)))]

        n = pick(self.num_layers)
        hidden = pick(self.hidden_sizes)
        ops = list(self.operation_parameters)
        layers = []
        for _ in range(n):
            op = pick(ops)
            layers.append(
                {
                    "operation_type": op,
                    "operation_parameter": pick(self.operation_parameters[op]),
                    "num_operation_heads": pick(self.num_operation_heads),
                    "feed_forward_dimension": pick(self.feed_forward_dimensions),
                    "num_feed_forward": pick(self.num_feed_forwards),
                }
            )
        return {"hidden_size": hidden, "layers": layers}


def as_int(v: Any, where: str) -> int:
    """``v`` as an int: accepts 9, 9.0 and "9" (JSON producers differ) but never bools or 9.5.

    Raises:
        ValueError: naming ``where`` and the value.
    """
    if isinstance(v, bool):
        raise ValueError(f"{where}: expected an integer, got {v!r}")
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, str) and v.strip().lstrip("-").isdigit():
        return int(v)
    raise ValueError(f"{where}: expected an integer, got {v!r}")


@lru_cache(maxsize=8)
def _load_search_space(path: str) -> SpaceDefinition:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"NAS-Bench-BERT search space not found: {p}")
    try:
        data = json.loads(p.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{p}: not valid JSON ({e}); the file is truncated or corrupt") from None
    return SpaceDefinition.from_dict(data, where=str(p))


def load_search_space(path: str | Path | None = None) -> SpaceDefinition:
    """Read ``search_space.json`` (cached per path).

    Args:
        path: the file; defaults to ``<data_dir>/nasbench_bert/search_space.json``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: malformed content.
    """
    return _load_search_space(str(Path(path or default_search_space_path()).resolve()))


def generate_config(rng: np.random.Generator, space: SpaceDefinition | None = None) -> dict:
    """Draw one configuration uniformly from the search space (see :meth:`SpaceDefinition.sample`).

    Args:
        rng: a NumPy ``Generator``; the same generator state gives the same configuration.
        space: the space; defaults to the data folder's ``search_space.json``.
    """
    return (space or load_search_space()).sample(rng)


class ConfigGenerator:
    """Reproducible stream of random NAS-Bench-BERT configurations.

    Args:
        seed: seed of the NumPy ``default_rng`` behind the stream: the same
            seed gives the same sequence of configurations.
        space: the search space (default: the data folder's).
    """

    def __init__(self, seed: int = 0, space: SpaceDefinition | None = None):
        self.seed = seed
        self.space = space or load_search_space()
        self._rng = np.random.default_rng(seed)

    def __call__(self) -> dict:
        """The next configuration of the stream."""
        return self.space.sample(self._rng)

    def take(self, n: int) -> list[dict]:
        """The next ``n`` configurations."""
        return [self() for _ in range(n)]

