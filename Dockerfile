# syntax=docker/dockerfile:1
# One image for every Chime service; the command picks it: `chime api`, `chime planner`, `chime executor`,
# `chime recorder`, `chime dlq`, `chime migrate`, `chime topics create`.
# The base is pinned by digest (update tag and digest together, e.g. with Renovate).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91

# -- build: wheels for Chime and every pinned dependency -------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY shared ./shared
COPY services ./services
RUN pip wheel --wheel-dir /wheels -c constraints.txt .

# -- runtime: the wheels installed, no compilers, no pip cache, a numeric non-root user ---------------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="chime" \
      org.opencontainers.image.description="Multi-tenant webhook scheduler on Apache Kafka" \
      org.opencontainers.image.source="https://github.com/chime-scheduler/chime" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CHIME_API_HOST=0.0.0.0 CHIME_OPS_HOST=0.0.0.0 CHIME_LOG_FORMAT=json \
    CHIME_PLANNER_DATA_DIR=/var/lib/chime/planner
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels "chime==${VERSION}" \
    && groupadd --system --gid 10001 chime \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent chime \
    && mkdir -p /var/lib/chime/planner \
    && chown -R 10001:10001 /var/lib/chime
WORKDIR /var/lib/chime
USER 10001:10001
EXPOSE 8000 8001 8002 8003 8004
# Asks /health of the service this container runs (found from PID 1's command line).
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 CMD ["chime", "health"]
ENTRYPOINT ["chime"]
CMD ["api"]
