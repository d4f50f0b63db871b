"""Loading the application's feature module: the one named by ``HEADWATER_FEATURES``.

The module declares ``FEATURE_SET`` (a :class:`~headwater.streams.featureset.FeatureSet`) and may
declare
``CONSTRAINTS`` (a :class:`~headwater.streams.anomalies.Constraints`) for ingest validation.

>>> spec = load_feature_module("headwater.demo.features")
>>> spec.feature_set.name, spec.feature_set.entity_key, "amount" in spec.constraints.fields
('card_activity', 'card_id', True)
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from headwater.schemas.domain import Domain
from headwater.streams.anomalies import Constraints
from headwater.streams.errors import FeatureSetError
from headwater.streams.featureset import FeatureSet


@dataclass(frozen=True)
class FeatureModule:
    """What a feature module declares."""

    path: str
    feature_set: FeatureSet
    constraints: Constraints

    def check_domain(self, domain: Domain) -> None:
        """Fail naming both if the feature set was declared for another event type or key."""
        fs = self.feature_set
        if fs.event_type != domain.name or fs.entity_key != domain.entity_key:
            raise FeatureSetError(
                f"HEADWATER_FEATURES={self.path}: feature set {fs.name!r} is for "
                f"{fs.event_type} keyed by {fs.entity_key}, but the configured domain "
                "(HEADWATER_EVENT_SCHEMA_FILE) is "
                f"{domain.name} keyed by {domain.entity_key}"
            )
        fields = set(domain.numeric_fields) | set(domain.categorical_fields)
        unknown = set(fs.columns) - fields
        if unknown:
            raise FeatureSetError(
                f"HEADWATER_FEATURES={self.path}: feature set {fs.name!r} reads "
                f"{sorted(unknown)}, which are not numeric or categorical fields of {domain.name} "
                f"({sorted(fields)})"
            )
        numbers = {f for feature in fs.features for f in feature.reads_numbers()}
        not_numeric = numbers - set(domain.numeric_fields)
        if not_numeric:
            raise FeatureSetError(
                f"HEADWATER_FEATURES={self.path}: feature set {fs.name!r} computes numbers from "
                f"{sorted(not_numeric)}, which are not numeric fields of {domain.name} "
                f"({sorted(domain.numeric_fields)})"
            )


def load_feature_module(path: str) -> FeatureModule:
    """Import ``path`` and read its declarations, or fail saying what is missing."""
    try:
        module = importlib.import_module(path)
    except ImportError as error:
        raise FeatureSetError(
            f"HEADWATER_FEATURES={path!r} cannot be imported ({error}); is it on PYTHONPATH?"
        ) from None
    feature_set = getattr(module, "FEATURE_SET", None)
    if not isinstance(feature_set, FeatureSet):
        raise FeatureSetError(f"module {path} must declare FEATURE_SET = FeatureSet(...)")
    constraints = getattr(module, "CONSTRAINTS", Constraints())
    if not isinstance(constraints, Constraints):
        raise FeatureSetError(
            f"{path}.CONSTRAINTS must be a headwater.streams.anomalies.Constraints"
        )
    return FeatureModule(path, feature_set, constraints)
