"""The content-addressed artifact store: sha256 names, verification, atomic writes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from infra.errors import ConfigError, HeadwaterError
from infra.settings import HeadwaterSettings
from trainers.artifacts import ArtifactStore
from trainers.errors import ArtifactError, ArtifactMissing, ArtifactTampered


def test_put_and_get_bytes_round_trip_under_their_sha256(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    digest = store.put_bytes(b"some weights")
    assert digest == hashlib.sha256(b"some weights").hexdigest()
    assert store.path_of(digest) == tmp_path / digest[:2] / digest
    assert store.get_bytes(digest) == b"some weights"
    assert store.put_bytes(b"some weights") == digest  # idempotent
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [digest]


def test_put_file_stores_the_file_contents(tmp_path: Path) -> None:
    source = tmp_path / "bundle.pt"
    source.write_bytes(b"\x00\x01bundle")
    store = ArtifactStore(tmp_path / "store")
    digest = store.put_file(source)
    assert store.get_bytes(digest) == b"\x00\x01bundle"
    store.verify(digest)


def test_a_missing_artifact_is_named(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    absent = "0" * 64
    with pytest.raises(ArtifactMissing, match=absent) as caught:
        store.get_bytes(absent)
    assert str(store.path_of(absent)) in str(caught.value)
    assert isinstance(caught.value, HeadwaterError)
    with pytest.raises(ArtifactMissing):
        store.verify(absent)


def test_a_tampered_artifact_is_refused(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    digest = store.put_bytes(b"original")
    store.path_of(digest).write_bytes(b"changed!")
    with pytest.raises(ArtifactTampered, match=digest):
        store.get_bytes(digest)
    with pytest.raises(ArtifactTampered, match=str(store.path_of(digest))):
        store.verify(digest)


def test_a_malformed_sha256_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="not a lowercase hex sha256"):
        ArtifactStore(tmp_path).path_of("../../etc/passwd")


def test_the_store_location_comes_from_the_settings(tmp_path: Path) -> None:
    default = ArtifactStore.from_settings(HeadwaterSettings(home=tmp_path))
    assert default.root == tmp_path / "artifacts"
    custom = HeadwaterSettings(home=tmp_path, artifact_store=str(tmp_path / "elsewhere"))
    assert ArtifactStore.from_settings(custom).root == tmp_path / "elsewhere"
    url = HeadwaterSettings(home=tmp_path, artifact_store=f"file://{tmp_path}/u")
    assert ArtifactStore.from_settings(url).root == tmp_path / "u"
    s3 = HeadwaterSettings(home=tmp_path, artifact_store="s3://bucket/prefix")
    with pytest.raises(ConfigError, match="HEADWATER_ARTIFACT_STORE"):
        ArtifactStore.from_settings(s3)
