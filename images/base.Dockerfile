# dermpipe CPU base image: every pipeline step except train runs on it (KFP lightweight components with
# install_kfp_package=False, so the image must carry kfp and dermpipe).
# Build from the repository root:
#   docker build -f images/base.Dockerfile -t us-docker.pkg.dev/PROJECT/dermpipe/base:0.1.0 .
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2

WORKDIR /opt/dermpipe
COPY pyproject.toml README.md ./
COPY dermpipe ./dermpipe
COPY components ./components
COPY pipelines ./pipelines
RUN pip install . && python -c "import dermpipe.pipelines.training, tf_keras_vis, kfp"

RUN useradd --create-home --uid 1000 dermpipe
USER 1000
WORKDIR /home/dermpipe
