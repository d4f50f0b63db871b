"""A content-addressed artifact store: bytes are filed under their sha256 and verified on read.

Artifacts are weights bundles, preprocessing statistics, reference distributions and datasets.
The default store is the directory ``HEADWATER_HOME/artifacts`` (``HEADWATER_ARTIFACT_STORE``
may name another directory). Writes are atomic (a temporary file renamed into place), so a
reader never sees half an artifact, and two writers of the same bytes agree on the result.

>>> import tempfile
>>> store = ArtifactStore(Path(tempfile.mkdtemp()))
>>> digest = store.put_bytes(b"weights")
>>> digest[:12], store.get_bytes(digest)
('9a129038d9a0', b'weights')
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from infra.errors import ConfigError
from infra.settings import HeadwaterSettings
from trainers.errors import ArtifactError, ArtifactMissing, ArtifactTampered

_CHUNK = 1 << 20


def sha256_of(data: bytes) -> str:
    """The hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def _is_sha256(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


class ArtifactStore:
    """Bytes by sha256 under ``root`` (``root/ab/abcdef…``)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def from_settings(cls, settings: HeadwaterSettings) -> ArtifactStore:
        """The store these settings name: the default directory, a path, or a ``file://`` URL."""
        location = settings.artifact_store
        if not location:
            return cls(settings.home / "artifacts")
        if location.startswith("file://"):
            return cls(Path(location[len("file://") :]))
        if "://" in location:
            raise ConfigError(
                f"HEADWATER_ARTIFACT_STORE={location!r}: only directories (a path or file://) are "
                "supported yet; S3-compatible URLs are not supported yet"
            )
        return cls(Path(location))

    def path_of(self, sha256: str) -> Path:
        """Where the artifact with this sha256 lives (whether or not it exists)."""
        if not _is_sha256(sha256):
            raise ArtifactError(f"{sha256!r} is not a lowercase hex sha256")
        return self.root / sha256[:2] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path_of(sha256).is_file()

    def put_bytes(self, data: bytes) -> str:
        """Store ``data``; returns its sha256. Storing the same bytes twice is a no-op."""
        digest = sha256_of(data)
        target = self.path_of(digest)
        if target.is_file():
            return digest
        self._write_atomically(target, data)
        return digest

    def put_file(self, path: Path) -> str:
        """Store the contents of the file at ``path``; returns their sha256."""
        try:
            data = path.read_bytes()
        except OSError as error:
            raise ArtifactError(f"cannot read {path} to store it: {error}") from None
        return self.put_bytes(data)

    def get_bytes(self, sha256: str) -> bytes:
        """The artifact's bytes, verified against ``sha256``."""
        path = self.path_of(sha256)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ArtifactMissing(
                f"artifact {sha256} is not in the store (expected at {path})"
            ) from None
        except OSError as error:
            raise ArtifactError(f"cannot read artifact {sha256} at {path}: {error}") from None
        actual = sha256_of(data)
        if actual != sha256:
            raise ArtifactTampered(
                f"artifact {sha256} at {path} hashes to {actual}: its bytes changed after it was "
                "stored; re-create it from its run instead of trusting it"
            )
        return data

    def verify(self, sha256: str) -> None:
        """Raise :class:`ArtifactMissing` or :class:`ArtifactTampered` unless the artifact is
        present and intact."""
        path = self.path_of(sha256)
        digest = hashlib.sha256()
        try:
            with path.open("rb") as source:
                while chunk := source.read(_CHUNK):
                    digest.update(chunk)
        except FileNotFoundError:
            raise ArtifactMissing(
                f"artifact {sha256} is not in the store (expected at {path})"
            ) from None
        if digest.hexdigest() != sha256:
            raise ArtifactTampered(
                f"artifact {sha256} at {path} hashes to {digest.hexdigest()}: its bytes changed"
            )

    def _write_atomically(self, target: Path, data: bytes) -> None:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
            with os.fdopen(handle, "wb") as sink:
                sink.write(data)
                sink.flush()
                os.fsync(sink.fileno())
            os.replace(temporary, target)
        except OSError as error:
            raise ArtifactError(f"cannot write artifact to {target}: {error}") from None
