"""LZ4 for aiokafka (under Faust) without ``cramjam``.

The platform's confluent-kafka producers compress with LZ4 (``headwater.infra.kafka_clients``);
aiokafka
0.14 decompresses LZ4 only through ``cramjam``, which is not a dependency. The ``lz4`` package
(installed with clickhouse-connect) reads the same LZ4 frames, so this module lends aiokafka
its frame decompressor. Once ``cramjam`` is installed, :func:`enable_lz4` changes nothing.

>>> import lz4.frame
>>> enable_lz4()
>>> from aiokafka import codec
>>> codec.has_lz4(), codec.lz4_decode(lz4.frame.compress(b"headwater"))
(True, b'headwater')
"""

from __future__ import annotations

from types import SimpleNamespace


def _unavailable(codec: str) -> object:
    def fail(*args: object, **kwargs: object) -> bytes:
        raise RuntimeError(
            f"{codec} records need the cramjam package (pip install cramjam); only lz4, gzip "
            "and uncompressed records can be read without it"
        )

    return SimpleNamespace(decompress=fail, decompress_raw=fail, Compressor=fail)


def enable_lz4() -> None:
    """Let aiokafka decompress LZ4 record batches with the ``lz4`` package."""
    from aiokafka import codec

    if codec.cramjam is not None:
        return
    import lz4.frame

    codec.cramjam = SimpleNamespace(
        lz4=SimpleNamespace(decompress=lz4.frame.decompress, Compressor=_Lz4Compressor),
        snappy=_unavailable("snappy"),
        zstd=_unavailable("zstd"),
    )


class _Lz4Compressor:
    """What aiokafka's lz4_encode calls: independent blocks, no content checksum (KIP-57)."""

    def __init__(
        self, level: int = 9, content_checksum: bool = False, block_linked: bool = False
    ) -> None:
        self._level = level
        self._checksum = content_checksum
        self._linked = block_linked
        self._parts: list[bytes] = []

    def compress(self, payload: bytes) -> None:
        self._parts.append(bytes(payload))

    def finish(self) -> bytes:
        import lz4.frame

        return bytes(
            lz4.frame.compress(
                b"".join(self._parts),
                compression_level=self._level,
                content_checksum=self._checksum,
                block_linked=self._linked,
            )
        )
