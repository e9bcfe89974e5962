"""What every search space provides: indexed architectures, their ground truth and a model builder.

A *search space* (``space=...`` in the configs) is a finite, indexed
population of architectures of one *model family* (``rnn``, ``bert``, ...),
the family deciding which training-free metrics apply and how a model is
trained. :class:`SearchSpace` is the contract the tasks rely on, after the
NAS-Bench-201 API (``len(api)``, ``api[i]``, ``query_index_by_arch``,
``get_net_config``/``get_cell_based_tiny_net``, ``get_more_info``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

if TYPE_CHECKING:
    from torch import nn


@dataclass
class Architecture:
    """One architecture of a search space.

    Attributes:
        index: position in the space (the ``arch`` config value).
        benchmark_id: the benchmark's own id (NAS-Bench-NLP recipe id,
            NAS-Bench-BERT ``id``) as a string; None for generated ones.
        spec: the architecture itself: a :class:`~tfnas.spaces.nasbench_nlp.recipe.Recipe`
            or a NAS-Bench-BERT layer configuration dict.
        truth: ground truth known for it, e.g. ``{"test_loss": 4.61,
            "test_ppl": 100.5}`` or GLUE scores; empty when unknown.
        meta: everything else the benchmark recorded (hyperparameters,
            training status, experiment id, ...).
    """

    index: int
    benchmark_id: str | None
    spec: Any
    truth: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class SearchSpace(Protocol):
    """The contract of a search space (what ``score.py`` and ``train.py`` use).

    A space subclasses this protocol explicitly to inherit :meth:`index_of`
    and :meth:`truth`; it must define the rest.

    Attributes:
        name: the space's config name (``space=<name>``), also the folder of
            its records: ``nasbench_nlp``, ``nasbench_bert``.
        family: the model family of its architectures, which keys the
            training-free metrics and the training protocol: ``rnn``, ``bert``.
    """

    name: ClassVar[str]
    family: ClassVar[str]

    def __len__(self) -> int:
        """Number of architectures; valid indices are ``0 .. len - 1``."""
        ...

    def __getitem__(self, index: int) -> Architecture:
        """Architecture ``index`` (a fresh object; mutating it does not change the space).

        Raises:
            IndexError: ``index`` outside ``[0, len)`` (see :func:`check_index`).
        """
        ...

    def build(self, arch: Architecture, seed: int = 0, **overrides: Any) -> "nn.Module":
        """The untrained network of ``arch``, on the CPU, seeded with ``seed`` just before construction.

        Raises:
            ValueError: ``arch`` cannot be built (e.g. an invalid benchmark entry);
                the message says why.
        """
        ...

    def normalize(self, spec: Any) -> Any:
        """``spec`` in the form this space stores in :attr:`Architecture.spec` (validated).

        Raises:
            ValueError: ``spec`` is not a valid architecture of this space.
        """
        ...

    def index_of(self, spec: Any) -> int:
        """The first index whose architecture is ``spec`` (NAS-Bench-201's ``query_index_by_arch``).

        Args:
            spec: an architecture in any form :meth:`normalize` accepts.

        Raises:
            ValueError: ``spec`` is invalid.
            KeyError: ``spec`` is not in this space.
        """
        wanted = self.normalize(spec)
        for i in range(len(self)):
            if self[i].spec == wanted:
                return i
        raise KeyError(f"this architecture is not in {self.name} ({len(self)} architectures)")

    def truth(self, index: int) -> dict[str, Any]:
        """The ground truth of architecture ``index`` (empty when unknown, e.g. a generated one)."""
        return dict(self[index].truth)


def check_index(index: int, size: int, what: str) -> None:
    """Raise one clear IndexError when ``index`` is outside ``[0, size)``.

    Raises:
        IndexError: with the valid range and what the space is.
    """
    if not 0 <= index < size:
        raise IndexError(f"arch={index} is out of range: {what} has {size} architectures (arch=0..{size - 1})")
