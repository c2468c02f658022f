# The one image for the pipeline components, the model server and the CronJobs.
#
# Build: `make image` (podman), or `docker build -t ghcr.io/mlstack/mlstack:0.1.0 .`
# The base is BASE_IMAGE, python:3.11-slim by default, in one of two ways:
#   - pulled from a registry (docker.io/library/python:3.11-slim), when one is reachable;
#   - built from Debian packages: `make base-image` debootstraps bookworm (Python 3.11,
#     python3-pip, ca-certificates) and imports it into podman as python:3.11-slim, so this
#     FROM finds it without a registry. Any other base: --build-arg BASE_IMAGE=<name>.
# Behind a proxy with its own CA: --secret id=ca_bundle,src=<pem> (`make image CA_BUNDLE=…`);
# the bundle is used by pip/uv during the build only and is not kept in the image.
#
# No ENTRYPOINT: Kubernetes replaces it with the container's command anyway, and Docker/podman
# (KFP's DockerRunner runs `sh -c …` as the command) would append the command to it.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ARG UV_VERSION=0.13.9
# PYTHONOPTIMIZE=1: Feast's typeguard decorators re-parse module sources on import unless
# asserts are off (~8 s per process that imports Feast); the bytecode below is compiled for it.
# HOME=/tmp: libraries that write caches under ~ work with a read-only root filesystem.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONOPTIMIZE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib \
    MLSTACK_CONFIG=/app/configs/cdnow.yaml

WORKDIR /app

# Runtime dependencies only, pinned by the one lock file: the project's dependencies
# (pyproject.toml, no dev extra) resolved with requirements.lock as constraints, so every
# version is the locked one and no dev-only package (pytest, moto, helm-python-sdk,
# kubernetes-validate, ruff, hypothesis) is installed. uv itself is not kept.
# Pruned after the install, none of it read at run time (measured: ~330 MB):
#   - the test suites inside the big scientific packages (~160 MB);
#   - mypy (~65 MB; Feast asks for sqlalchemy[mypy], a type-checker plugin) and grpcio-tools
#     (8 MB; KServe lists the protobuf compiler, the server never runs it);
#   - what only builds, types or documents: C/C++ headers and Cython sources, type stubs,
#     example notebooks, statsmodels' sample data sets (~35 MB);
#   - the Feast web UI's build with its source maps (26 MB; the chart runs `feast serve`,
#     which has no UI), plotly's Jupyter extension (9 MB);
#   - botocore's models of AWS services other than S3 and the credential services (~25 MB):
#     the object store (s3fs, MLflow's artifact store) is the only AWS API the stack calls.
# The README is copied with the package below, so editing it does not reinstall all of this.
COPY requirements.lock pyproject.toml /tmp/src/
RUN --mount=type=secret,id=ca_bundle \
    set -eu; \
    if [ -s /run/secrets/ca_bundle ]; then \
      export SSL_CERT_FILE=/run/secrets/ca_bundle PIP_CERT=/run/secrets/ca_bundle; fi; \
    python3 -m pip install --quiet --target /tmp/uv "uv==${UV_VERSION}"; \
    uv=/tmp/uv/bin/uv; \
    cd /tmp/src; \
    touch README.md; \
    "$uv" pip compile --quiet --no-header --no-annotate --python-version 3.11 \
      pyproject.toml -c requirements.lock -o /tmp/runtime.txt; \
    for dev in pytest pytest-timeout moto helm-python-sdk kubernetes-validate ruff hypothesis; do \
      if grep -qi "^${dev}==" /tmp/runtime.txt; then echo "dev-only package in the image: $dev"; exit 1; fi; \
    done; \
    "$uv" pip install --system --no-cache --quiet -r /tmp/runtime.txt; \
    "$uv" pip uninstall --system --quiet mypy grpcio-tools; \
    site=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
    cd "$site"; \
    for pkg in pandas scipy statsmodels ibis numpy sklearn dask pyarrow matplotlib; do \
      find "$pkg" -depth -type d -name tests -exec rm -rf {} +; done; \
    find . -depth -type d -name __pycache__ -exec rm -rf {} +; \
    find . -type f \( -name '*.h' -o -name '*.hpp' -o -name '*.pyx' -o -name '*.pxd' \
      -o -name '*.pxi' -o -name '*.pyi' -o -name '*.ipynb' \) -delete; \
    find statsmodels/datasets -type f -name '*.csv' -delete; \
    rm -rf pyarrow/include numpy/_core/include feast/ui/build jupyterlab_plotly; \
    for service in botocore/data/*/; do \
      case "$service" in */s3/|*/sts/|*/sso/|*/sso-oidc/) ;; *) rm -rf "$service";; esac; done; \
    rm -rf /tmp/uv /tmp/runtime.txt /root/.cache

# The project, then its bytecode: all of mlstack, components and pipelines, and every
# third-party module they import (plus the model flavours, servers and stores loaded at run
# time), compiled for PYTHONOPTIMIZE=1 by importing them once (podman/compile_bytecode.py).
# A read-only container then compiles nothing at start; modules no step imports (most of
# plotly, statsmodels, botocore's …) keep no bytecode: ~350 MB less than compiling all of
# site-packages.
COPY podman/compile_bytecode.py /tmp/
COPY mlstack /tmp/src/mlstack
COPY components /tmp/src/components
COPY pipelines /tmp/src/pipelines
COPY README.md /tmp/src/
RUN --mount=type=secret,id=ca_bundle \
    set -eu; \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi; \
    python3 -m pip install --quiet --no-deps /tmp/src; \
    rm -rf /tmp/src /root/.cache; \
    site=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
    env -u PYTHONDONTWRITEBYTECODE python3 -m compileall -q -o 1 "$site/mlstack" "$site/components" "$site/pipelines"; \
    cd /tmp && env -u PYTHONDONTWRITEBYTECODE python3 -W ignore /tmp/compile_bytecode.py; \
    rm -rf /tmp/* /tmp/.[!.]* 2>/dev/null || true; \
    useradd --uid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin mlstack

COPY configs ./configs
COPY data ./data
COPY feature_repo ./feature_repo

# Writable state (artifacts, Feast's local files) goes to services or mounted volumes on a
# cluster; these folders let local mode run in a container too.
# The compiled pipelines (the cluster profile) ride along: the drift CronJob submits
# /app/dist/training.yaml when its policy asks for a retrain (kfp.package_path).
RUN mkdir -p /app/artifacts /app/feature_repo/data \
 && chown -R 10001 /app/artifacts /app/feature_repo/data \
 && mlstack compile --out-dir /app/dist >/dev/null
# The image has no git: MLflow's run tags skip it quietly instead of warning in every step.
ENV GIT_PYTHON_REFRESH=quiet
USER 10001

CMD ["mlstack", "--help"]
