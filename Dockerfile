# The one image for the pipeline components, the model server and the CronJobs.
# Build: docker build -t ghcr.io/mlstack/mlstack:0.1.0 .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    MLSTACK_CONFIG=/app/configs/cdnow.yaml

WORKDIR /app

# Dependencies first, from the one lock file, so code changes reuse this layer.
COPY requirements.lock ./
RUN pip install uv==0.13.9 \
 && uv pip install --system --no-cache -r requirements.lock

COPY pyproject.toml README.md ./
COPY mlstack ./mlstack
COPY components ./components
COPY pipelines ./pipelines
RUN uv pip install --system --no-cache --no-deps . \
 && useradd --uid 10001 --no-create-home --home-dir /app mlstack

COPY configs ./configs
COPY data ./data
COPY feature_repo ./feature_repo

# Writable state (artifacts, Feast's local files) goes to mounted volumes on a cluster.
RUN mkdir -p /app/artifacts /app/feature_repo/data && chown -R 10001 /app/artifacts /app/feature_repo/data
USER 10001

ENTRYPOINT ["mlstack"]
CMD ["--help"]
