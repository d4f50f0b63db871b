# The platform's processes (stream workers, sink, scorer, trainers, dashboard): one image, the
# command picks the process (see docker-compose.yml). Kafka and ClickHouse run as their own
# services, so no Java is needed here.
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
RUN pip install -e . \
    && useradd --system --create-home --home-dir /var/lib/headwater headwater \
    && mkdir -p /var/lib/headwater/artifacts \
    && chown -R headwater /var/lib/headwater
USER headwater

# 8088 HTTP scoring, 8089 dashboard, 9464 /metrics.
EXPOSE 8088 8089 9464
CMD ["headwater", "status"]
