"""The content-addressed artifact store: sha256 names, verification, atomic writes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest

from headwater.core.errors import ConfigError, HeadwaterError
from headwater.core.settings import HeadwaterSettings
from headwater.trainers.artifacts import ArtifactStore
from headwater.trainers.errors import ArtifactError, ArtifactMissing, ArtifactTampered
from headwater.trainers.s3_blobs import S3Blobs


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
    s3 = HeadwaterSettings(
        home=tmp_path, artifact_store="s3://bucket/pre", artifact_s3_endpoint="http://s3.local"
    )
    blobs = ArtifactStore.from_settings(s3).blobs
    assert isinstance(blobs, S3Blobs) and blobs.url("ab/cd") == "http://s3.local/bucket/pre/ab/cd"
    ftp = HeadwaterSettings(home=tmp_path, artifact_store="ftp://host/x")
    with pytest.raises(ConfigError, match="HEADWATER_ARTIFACT_STORE"):
        ArtifactStore.from_settings(ftp)


class _Bucket:
    """An in-memory S3 bucket behind httpx's transport seam; it checks every request's
    payload hash and signature header."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        assert request.headers["x-amz-content-sha256"] == hashlib.sha256(body).hexdigest()
        assert request.headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=key/")
        key = request.url.path
        if request.method == "PUT":
            self.objects[key] = body
            return httpx.Response(200)
        if key not in self.objects:
            return httpx.Response(404)
        if request.method == "HEAD":
            return httpx.Response(200)
        return httpx.Response(200, content=self.objects[key])


def test_an_s3_store_puts_verifies_and_refuses_tampered_objects() -> None:
    bucket = _Bucket()
    blobs = S3Blobs(
        "http://s3.local",
        "models",
        "hw",
        "eu-west-1",
        "key",
        "secret",
        transport=httpx.MockTransport(bucket),
    )
    store = ArtifactStore(blobs=blobs)
    digest = store.put_bytes(b"bundle")
    assert list(bucket.objects) == [f"/models/hw/{digest[:2]}/{digest}"]
    assert store.get_bytes(digest) == b"bundle" and store.exists(digest)
    assert store.location_of(digest) == f"s3://models/hw/{digest[:2]}/{digest}"
    bucket.objects[f"/models/hw/{digest[:2]}/{digest}"] = b"evil"
    with pytest.raises(ArtifactTampered, match=f"s3://models/hw/{digest[:2]}/{digest}"):
        store.get_bytes(digest)
    with pytest.raises(ArtifactMissing, match="0" * 64):
        store.get_bytes("0" * 64)
    with pytest.raises(ArtifactError, match="not a file"):
        store.path_of(digest)
