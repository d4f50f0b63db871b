"""The trainers' errors: artifacts, the model registry, datasets, checkpoints and searches.

Each derives from :class:`headwater.core.errors.HeadwaterError` and names the thing that failed.

>>> issubclass(ArtifactTampered, ArtifactError) and issubclass(ArtifactError, HeadwaterError)
True
"""

from __future__ import annotations

from headwater.core.errors import HeadwaterError


class TrainerError(HeadwaterError):
    """Root of the trainers' errors."""


class ArtifactError(TrainerError):
    """An artifact cannot be stored or read."""


class ArtifactMissing(ArtifactError):
    """No artifact with this sha256 is in the store."""


class ArtifactTampered(ArtifactError):
    """An artifact's bytes no longer hash to the sha256 it is stored under."""


class BundleError(TrainerError):
    """A model bundle is malformed or of an unknown format."""


class RegistryError(TrainerError):
    """The model registry refused an operation."""


class UnknownModelVersion(RegistryError):
    """The model or version is not registered."""


class IllegalTransition(RegistryError):
    """A lifecycle change the registry does not allow (e.g. promoting an archived version)."""


class DatasetError(TrainerError):
    """A training set cannot be built (no labels, no features, a bad time range)."""


class CheckpointError(TrainerError):
    """A checkpoint cannot be written or does not match the run it should resume."""


class SearchError(TrainerError):
    """A hyperparameter search cannot run (bad space, no trial completed)."""
