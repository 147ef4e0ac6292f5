# dermpipe CPU base image: every pipeline step except train runs on it (KFP lightweight components with
# install_kfp_package=False, so the image must carry kfp and dermpipe).
# Build from the repository root (or `make images`):
#   docker build -f images/base.Dockerfile -t us-docker.pkg.dev/PROJECT/dermpipe/base:0.1.0 .
# Two stages: the builder installs dermpipe and its dependencies into a virtual environment; the runtime stage copies
# only that environment onto a clean slim image (no pip cache, no build files, no source tree), running as non-root.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY dermpipe ./dermpipe
COPY components ./components
COPY pipelines ./pipelines
# Installs this project (its dependency ranges are pinned in pyproject.toml), not an unpinned PyPI package.
# hadolint ignore=DL3013
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir .

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TF_CPP_MIN_LOG_LEVEL=2
COPY --from=builder /opt/venv /opt/venv
RUN python -c "import dermpipe.pipelines.training, tf_keras_vis, kfp" \
    && useradd --create-home --uid 1000 dermpipe
USER 1000
WORKDIR /home/dermpipe
