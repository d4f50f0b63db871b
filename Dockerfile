# The platform's processes (stream workers, sink, scorer, trainers, dashboard): one image, the
# command picks the process (see docker-compose.yml). Kafka and ClickHouse run as their own
# services, so no Java is needed here.
# The native Avro codec (native/, Rust): built in a stage of its own, so the image carries only
# its wheel. Debian bookworm's Python is 3.11, as in the image below.
FROM rust:1-slim-bookworm AS native
RUN apt-get update -qq && apt-get install -y -qq python3 python3-venv >/dev/null \
    && python3 -m venv /build && /build/bin/pip install -q "maturin>=1.5,<2"
COPY native /native
RUN /build/bin/maturin build --release -q -m /native/Cargo.toml -i /build/bin/python -o /wheels

FROM python:3.11-slim

# Optional: an extra package index for CPU-only torch wheels, which make the image much smaller.
ARG PIP_EXTRA_INDEX_URL=""
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_EXTRA_INDEX_URL=${PIP_EXTRA_INDEX_URL} \
    HEADWATER_HOME=/var/lib/headwater

WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY streams ./streams
COPY serving ./serving
COPY trainers ./trainers
COPY infra ./infra
# Editable: data files (DDL, Avro schemas, dashboard assets) are read from /app as in a checkout.
COPY --from=native /wheels /wheels
RUN pip install -e . /wheels/*.whl \
    && useradd --system --create-home --home-dir /var/lib/headwater headwater \
    && mkdir -p /var/lib/headwater/artifacts \
    && chown -R headwater /var/lib/headwater
USER headwater

# 8088 HTTP scoring, 8089 dashboard, 9464 /metrics.
EXPOSE 8088 8089 9464
CMD ["headwater", "status"]
