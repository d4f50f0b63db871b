"""A content-addressed artifact store: bytes are filed under their sha256 and verified on read.

Artifacts are weights bundles, preprocessing statistics, reference distributions and datasets.
The default store is the directory ``HEADWATER_HOME/artifacts``; ``HEADWATER_ARTIFACT_STORE``
may name another directory (a path or ``file://``) or an S3-compatible bucket
(``s3://bucket/prefix``, see :mod:`headwater.trainers.s3_blobs`). Writes are atomic (a temporary
file
renamed into place, or one S3 PUT), so a reader never sees half an artifact, and two writers of
the same bytes agree on the result.

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
from typing import Protocol

from headwater.core.errors import ConfigError
from headwater.core.settings import HeadwaterSettings
from headwater.trainers.errors import ArtifactError, ArtifactMissing, ArtifactTampered


def sha256_of(data: bytes) -> str:
    """The hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def _is_sha256(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


class Blobs(Protocol):
    """Where the store's bytes live: a directory or an object store."""

    def read(self, key: str) -> bytes | None: ...

    def exists(self, key: str) -> bool: ...

    def write(self, key: str, data: bytes) -> None: ...

    def describe(self, key: str) -> str: ...


class DirectoryBlobs:
    """Files under ``root``, written atomically."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def describe(self, key: str) -> str:
        return str(self.root / key)

    def read(self, key: str) -> bytes | None:
        try:
            return (self.root / key).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as error:
            raise ArtifactError(f"cannot read {self.root / key}: {error}") from None

    def exists(self, key: str) -> bool:
        return (self.root / key).is_file()

    def write(self, key: str, data: bytes) -> None:
        target = self.root / key
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


class ArtifactStore:
    """Bytes by sha256 (``ab/abcdef…``) under a directory ``root``, or in ``blobs``."""

    def __init__(self, root: Path | None = None, blobs: Blobs | None = None) -> None:
        if blobs is None:
            if root is None:
                raise ArtifactError("an artifact store needs a directory or a blob store")
            blobs = DirectoryBlobs(root)
        self.root = root
        self.blobs = blobs

    @classmethod
    def from_settings(cls, settings: HeadwaterSettings) -> ArtifactStore:
        """The store these settings name: the default directory, a path, ``file://`` or
        ``s3://``."""
        location = settings.artifact_store
        if not location:
            return cls(settings.home / "artifacts")
        if location.startswith("file://"):
            return cls(Path(location[len("file://") :]))
        if location.startswith("s3://"):
            from headwater.trainers.s3_blobs import S3Blobs

            return cls(blobs=S3Blobs.from_settings(settings))
        if "://" in location:
            raise ConfigError(
                f"HEADWATER_ARTIFACT_STORE={location!r}: expected a directory, file://PATH or "
                "s3://BUCKET/PREFIX"
            )
        return cls(Path(location))

    @staticmethod
    def key_of(sha256: str) -> str:
        if not _is_sha256(sha256):
            raise ArtifactError(f"{sha256!r} is not a lowercase hex sha256")
        return f"{sha256[:2]}/{sha256}"

    def path_of(self, sha256: str) -> Path:
        """Where the artifact with this sha256 lives in a directory store."""
        key = self.key_of(sha256)
        if self.root is None:
            raise ArtifactError(f"artifact {sha256} is in {self.location_of(sha256)}, not a file")
        return self.root / key

    def location_of(self, sha256: str) -> str:
        """The artifact's path or URL, for messages."""
        return self.blobs.describe(self.key_of(sha256))

    def exists(self, sha256: str) -> bool:
        return self.blobs.exists(self.key_of(sha256))

    def put_bytes(self, data: bytes) -> str:
        """Store ``data``; returns its sha256. Storing the same bytes twice is a no-op."""
        digest = sha256_of(data)
        key = self.key_of(digest)
        if not self.blobs.exists(key):
            self.blobs.write(key, data)
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
        key = self.key_of(sha256)
        data = self.blobs.read(key)
        where = self.blobs.describe(key)
        if data is None:
            raise ArtifactMissing(f"artifact {sha256} is not in the store (expected at {where})")
        actual = sha256_of(data)
        if actual != sha256:
            raise ArtifactTampered(
                f"artifact {sha256} at {where} hashes to {actual}: its bytes changed after it was "
                "stored; re-create it from its run instead of trusting it"
            )
        return data

    def verify(self, sha256: str) -> None:
        """Raise :class:`ArtifactMissing` or :class:`ArtifactTampered` unless the artifact is
        present and intact."""
        self.get_bytes(sha256)
