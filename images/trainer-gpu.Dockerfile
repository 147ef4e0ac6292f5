# dermpipe GPU trainer image: the train step on GPU nodes (CUDA wheels of TensorFlow through the `gpu` extra).
# ImageNet weights are baked into the Keras cache at build time so training never downloads at run time:
#   docker build -f images/trainer-gpu.Dockerfile --build-arg BACKBONES="EfficientNetB0 EfficientNetB3" \
#     -t us-docker.pkg.dev/PROJECT/dermpipe/trainer-gpu:0.1.0 .
# Two stages: the builder installs dermpipe[gpu] into a virtual environment and downloads the weights; the runtime
# stage copies the environment and the weights only, and runs as non-root. The NVIDIA driver comes from the node.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ARG BACKBONES="EfficientNetB0"
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    KERAS_HOME=/opt/keras \
    TF_CPP_MIN_LOG_LEVEL=2
WORKDIR /src
COPY pyproject.toml README.md ./
COPY dermpipe ./dermpipe
COPY components ./components
COPY pipelines ./pipelines
# Installs this project (its dependency ranges are pinned in pyproject.toml), not an unpinned PyPI package.
# hadolint ignore=DL3013
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir ".[gpu]"
# Bake the ImageNet weights of the chosen backbones (without their top) into the Keras cache.
RUN /opt/venv/bin/python -c "import keras, sys; [getattr(keras.applications, n)(include_top=False, weights='imagenet') for n in sys.argv[1:]]" ${BACKBONES}

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    KERAS_HOME=/opt/keras
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /opt/keras /opt/keras
RUN chmod -R a+rX /opt/keras \
    && python -c "import dermpipe.pipelines.training, kfp" \
    && useradd --create-home --uid 1000 dermpipe
USER 1000
WORKDIR /home/dermpipe
