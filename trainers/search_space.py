"""The hyperparameter search space of the tabular family, as Optuna distributions.

>>> space = default_space(epochs=3)
>>> sorted(space.distributions)
['batch_size', 'depth', 'dropout', 'lr', 'weight_decay', 'width']
>>> space.fixed
{'epochs': 3}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from headwater.schemas.models import ParamValue


@dataclass(frozen=True)
class SearchSpace:
    """Distributions to search and parameters every trial shares (``fixed``)."""

    distributions: dict[str, BaseDistribution]
    fixed: dict[str, ParamValue] = field(default_factory=dict)

    def params_of(self, sampled: Mapping[str, Any]) -> dict[str, ParamValue]:
        """A trial's full parameters: the sampled ones with the fixed ones."""
        params: dict[str, ParamValue] = dict(self.fixed)
        for name, value in sampled.items():
            params[name] = value if isinstance(value, str | bool | int | float) else str(value)
        return params


def default_space(epochs: int = 8) -> SearchSpace:
    """Width, depth, dropout, learning rate, weight decay and batch size of the MLP."""
    return SearchSpace(
        {
            "width": IntDistribution(8, 128, log=True),
            "depth": IntDistribution(1, 4),
            "dropout": FloatDistribution(0.0, 0.5),
            "lr": FloatDistribution(1e-4, 0.3, log=True),
            "weight_decay": FloatDistribution(1e-6, 1e-2, log=True),
            "batch_size": CategoricalDistribution([32, 64, 128, 256]),
        },
        {"epochs": epochs},
    )
