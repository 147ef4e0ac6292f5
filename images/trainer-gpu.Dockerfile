# dermpipe GPU trainer image: the train step on GPU nodes (CUDA wheels of TensorFlow through the `gpu` extra).
# ImageNet weights are baked into the Keras cache at build time so training never downloads at run time:
#   docker build -f images/trainer-gpu.Dockerfile --build-arg BACKBONES="EfficientNetB0 EfficientNetB3" \
#     -t us-docker.pkg.dev/PROJECT/dermpipe/trainer-gpu:0.1.0 .
FROM python:3.11-slim-bookworm

ARG BACKBONES="EfficientNetB0"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    KERAS_HOME=/opt/keras

WORKDIR /opt/dermpipe
COPY pyproject.toml README.md ./
COPY dermpipe ./dermpipe
COPY components ./components
COPY pipelines ./pipelines
# Installs this project (its dependency ranges are pinned in pyproject.toml), not an unpinned PyPI package.
# hadolint ignore=DL3013
RUN pip install ".[gpu]"

# Bake the ImageNet weights of the chosen backbones (without their top) into the Keras cache.
RUN python -c "import keras, sys; [getattr(keras.applications, n)(include_top=False, weights='imagenet') for n in sys.argv[1:]]" ${BACKBONES} \
    && chmod -R a+rX /opt/keras

RUN useradd --create-home --uid 1000 dermpipe
USER 1000
WORKDIR /home/dermpipe
