# dermpipe serving image: `dermpipe serve` (FastAPI; TF Serving REST API, Open Inference Protocol v2, :explain,
# /predict, /healthz, /readyz, /metrics) answering on port 8080 for the registry given as an argument, and TF Serving's
# gRPC API on 8500 when started with --grpc-port 8500 (as infra/k8s/kserve does):
#   docker build -f images/serving.Dockerfile -t us-docker.pkg.dev/PROJECT/dermpipe/serving:0.1.0 .
#   docker run -p 8080:8080 -v "$PWD/tokens.txt:/run/secrets/dermpipe-tokens:ro" \
#     us-docker.pkg.dev/PROJECT/dermpipe/serving:0.1.0 --auth-token-file /run/secrets/dermpipe-tokens \
#     --registry-root gs://BUCKET/dermpipe/registry --log-root gs://BUCKET/dermpipe/predictions
# It listens on 0.0.0.0, so without --auth-token-file (or $DERMPIPE_SERVE_TOKENS) it refuses every label sent to
# feedback (403) and says so at start-up; predictions stay open (docs/security.md). The tokens are mounted at run
# time (a file, a Kubernetes Secret), never built into the image.
# Used by the KServe InferenceService in infra/k8s/kserve/ and by Cloud Run. Two stages, non-root, no secrets:
# credentials come from the workload identity of the pod / service, never from the image.
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
    TF_CPP_MIN_LOG_LEVEL=2 \
    DERMPIPE_HOME=/tmp/dermpipe
COPY --from=builder /opt/venv /opt/venv
RUN python -c "import dermpipe.cli.main" \
    && useradd --create-home --uid 1000 dermpipe
USER 1000
WORKDIR /home/dermpipe
EXPOSE 8080 8500
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
ENTRYPOINT ["dermpipe", "serve", "--host", "0.0.0.0", "--port", "8080"]
