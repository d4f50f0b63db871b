"""Objects in an S3-compatible bucket (AWS S3, MinIO, Ceph…), path-style, signed with SigV4.

The blob seam of :class:`~headwater.trainers.artifacts.ArtifactStore` for
``HEADWATER_ARTIFACT_STORE=
s3://bucket/prefix``; the endpoint, region and keys come from the ``HEADWATER_ARTIFACT_S3_*``
settings.

>>> blobs = S3Blobs("http://127.0.0.1:9000", "models", "hw", "us-east-1", "k", "s")
>>> blobs.url("ab/abcd")
'http://127.0.0.1:9000/models/hw/ab/abcd'
"""

from __future__ import annotations

import hashlib
from urllib.parse import urlsplit

import httpx

from headwater.core.errors import ConfigError
from headwater.core.settings import HeadwaterSettings
from headwater.trainers.errors import ArtifactError
from headwater.trainers.s3_signing import EMPTY_SHA256, sign_request


class S3Blobs:
    """Reads and writes objects under ``prefix`` in ``bucket``."""

    def __init__(
        self,
        endpoint: str,
        bucket: str,
        prefix: str,
        region: str,
        access_key: str,
        secret_key: str,
        timeout_s: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.region = region
        self._access_key = access_key
        self._secret_key = secret_key
        self._http = httpx.Client(timeout=timeout_s, transport=transport)

    @classmethod
    def from_settings(cls, settings: HeadwaterSettings) -> S3Blobs:
        parts = urlsplit(settings.artifact_store)
        if not parts.netloc:
            raise ConfigError(
                f"HEADWATER_ARTIFACT_STORE={settings.artifact_store!r}: expected s3://bucket/prefix"
            )
        region = settings.artifact_s3_region
        endpoint = settings.artifact_s3_endpoint or f"https://s3.{region}.amazonaws.com"
        return cls(
            endpoint,
            parts.netloc,
            parts.path,
            region,
            settings.artifact_s3_access_key,
            settings.artifact_s3_secret_key.get_secret_value(),
        )

    def url(self, key: str) -> str:
        path = f"{self.prefix}/{key}" if self.prefix else key
        return f"{self.endpoint}/{self.bucket}/{path}"

    def describe(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.prefix + '/' if self.prefix else ''}{key}"

    def _request(self, method: str, key: str, body: bytes = b"") -> httpx.Response:
        url = self.url(key)
        digest = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
        headers = sign_request(
            method,
            url,
            {},
            digest,
            region=self.region,
            access_key=self._access_key,
            secret_key=self._secret_key,
        )
        try:
            return self._http.request(method, url, content=body or None, headers=headers)
        except httpx.HTTPError as error:
            raise ArtifactError(
                f"object store at {self.endpoint} is unreachable: {error}"
            ) from None

    def _fail(self, action: str, key: str, response: httpx.Response) -> ArtifactError:
        return ArtifactError(
            f"{action} {self.describe(key)} failed: HTTP {response.status_code} "
            f"{response.text[:300]}"
        )

    def read(self, key: str) -> bytes | None:
        response = self._request("GET", key)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._fail("reading", key, response)
        return response.content

    def exists(self, key: str) -> bool:
        response = self._request("HEAD", key)
        if response.status_code in (200, 404):
            return response.status_code == 200
        raise self._fail("checking", key, response)

    def write(self, key: str, data: bytes) -> None:
        # An S3 PUT is atomic: readers see the old object or the whole new one.
        response = self._request("PUT", key, data)
        if response.status_code not in (200, 201):
            raise self._fail("writing", key, response)
