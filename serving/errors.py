"""The errors of serving: why a model version could not answer, and what to do about it.

Each one derives from :class:`headwater.core.errors.HeadwaterError` and names the model version, the
artifact or the setting involved.

>>> issubclass(CircuitOpen, ScoringFailed) and issubclass(ScoringFailed, ServingError)
True
"""

from __future__ import annotations

from headwater.core.errors import HeadwaterError


class ServingError(HeadwaterError):
    """Root of the serving errors."""


class RoutingError(ServingError):
    """A routing change is malformed (bad weights, unknown version, no traffic at all)."""


class ModelUnavailable(ServingError):
    """No servable version of a model is known (nothing registered, nothing routed)."""


class ArtifactRefused(ServingError):
    """A version's artifact is missing, tampered with, or not a loadable model bundle."""


class InvalidFeatures(ServingError):
    """A feature vector lacks a feature the model needs, or holds a non-finite value."""


class ScoringFailed(ServingError):
    """One call of a model version failed; the fallback chain decides what answers instead."""


class ModelRaised(ScoringFailed):
    """The model's own code raised."""


class ScoringTimeout(ScoringFailed):
    """The model did not answer within its per-call timeout."""


class CircuitOpen(ScoringFailed):
    """The version's circuit breaker is open: calls are refused until its sleep window passes."""


class BulkheadFull(ScoringFailed):
    """Every concurrent slot of the version is taken (possibly by hung calls)."""


class QueueFull(ServingError):
    """The HTTP batch queue holds as many requests as it may (HEADWATER_SERVING_HTTP_QUEUE_MAX):
    the caller should retry later."""
