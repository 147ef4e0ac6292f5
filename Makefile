# dermpipe: `make demo` runs the pipeline end to end on built-in demo data; `make test` runs the test suite.
# Both create the virtual environment (.venv) from a bare Python >= 3.11 and install everything they need.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TOOLS  := .venv-tools
TOOLS_STAMP := $(TOOLS)/.installed
TFCOMPAT := .venv-tf-compat
TFCOMPAT_STAMP := $(TFCOMPAT)/.installed
# TensorFlow of Google's prebuilt Vertex AI serving container (dermpipe.deploy.cloud_targets.VERTEX_TF_IMAGE): our SavedModels
# must load there (tests/serving/test_prebuilt_compat.py).
TFCOMPAT_VERSION := 2.15.1
# TensorFlow 2.15 has wheels for Python <= 3.11 only: use python3.11 when the machine has it.
TFCOMPAT_PYTHON ?= $(shell command -v python3.11 || echo $(PYTHON))
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PIP_DISABLE_PIP_VERSION_CHECK = 1

.DEFAULT_GOAL := help
.PHONY: help install demo test lint compile images bench bench-serving bench-serving-quick clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# Quiet on purpose (make demo prints <= 60 lines from a fresh clone): one line says what is happening, pip prints only
# errors. The editable install with mapped package folders (components/, pipelines/) always has setuptools emit an
# informational 'Editable installation.' note (10 lines); PYTHONWARNINGS drops that one note, nothing else.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), f"dermpipe needs Python >= 3.11, found {sys.version}"'
	@echo "installing dermpipe and its test tools into $(VENV) (several minutes the first time)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	@PYTHONWARNINGS='ignore:Editable installation' $(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# checkov (infrastructure checks in tests/infra) in its own environment: its pins clash with the test tools.
$(TOOLS_STAMP):
	test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet 'checkov>=3.2,<4'
	touch $(TOOLS_STAMP)

# An older TensorFlow in its own environment, to check our SavedModels against the prebuilt serving runtime.
$(TFCOMPAT_STAMP):
	test -x $(TFCOMPAT)/bin/python || $(TFCOMPAT_PYTHON) -m venv $(TFCOMPAT)
	$(TFCOMPAT)/bin/python -m pip install --quiet 'tensorflow-cpu==$(TFCOMPAT_VERSION)'
	touch $(TFCOMPAT_STAMP)

install: $(STAMP) $(TOOLS_STAMP) $(TFCOMPAT_STAMP) ## create .venv and install dermpipe with its test tools

demo: $(STAMP) ## run the training pipeline locally on the built-in demo data (a few minutes on 2 CPU cores)
	$(BIN)/dermpipe run --source demo

# Test files run in TEST_WORKERS parallel pytest-xdist workers, each file whole on one worker (its module fixtures,
# often a trained model, are built once). On 2 cores, 2 workers take the suite to about 19 minutes (811 tests).
TEST_WORKERS ?= 2

test: $(STAMP) $(TOOLS_STAMP) $(TFCOMPAT_STAMP) ## run the test suite (unit, data, compile, kfp.local end-to-end, real ISIC images)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet  # the manual (docs/): a broken link or page fails
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

lint: $(STAMP) ## ruff on the code, import-linter on the layers, no import cycles in a folder, hadolint on the Dockerfiles
	$(BIN)/ruff check .
	$(BIN)/python tests/lint_layers.py
	$(BIN)/python tests/import_cycles.py
	$(BIN)/hadolint images/*.Dockerfile

compile: $(STAMP) ## write the KFP IR YAML of the training pipeline to training.yaml
	$(BIN)/dermpipe compile --out training.yaml

# Image registry and tag: $DERMPIPE_IMAGE_REGISTRY / $DERMPIPE_IMAGE_TAG (the same variables `dermpipe compile` reads),
# tag defaulting to the package version. BUILDER=docker (local engine, then push) or cloudbuild (gcloud builds submit).
REGISTRY ?= $(or $(DERMPIPE_IMAGE_REGISTRY),us-docker.pkg.dev/dermpipe/dermpipe)
TAG      ?= $(or $(DERMPIPE_IMAGE_TAG),$(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml))
BUILDER  ?= docker
BACKBONES ?= EfficientNetB0
IMAGES   := base trainer-gpu serving

images: ## build and push the base, trainer-gpu and serving images (REGISTRY=... TAG=... BUILDER=docker|cloudbuild)
ifeq ($(BUILDER),cloudbuild)
	gcloud builds submit --config images/cloudbuild.yaml \
	  --substitutions=_REGISTRY=$(REGISTRY),_TAG=$(TAG),_BACKBONES="$(BACKBONES)" .
else
	for image in $(IMAGES); do \
	  docker build -f images/$$image.Dockerfile --build-arg BACKBONES="$(BACKBONES)" -t $(REGISTRY)/$$image:$(TAG) . \
	  && docker push $(REGISTRY)/$$image:$(TAG) || exit 1; \
	done
endif
bench: $(STAMP) ## input-pipeline images/s: dermpipe vs the seed's ImageDataGenerator vs the tf.data ceiling
	$(BIN)/python benchmarks/input_pipeline.py

# MLServer 1.7 (the goodput benchmark's peer) in its own environment: it pins FastAPI below dermpipe's. Never built by
# `make test`; tests/serving/test_goodput_harness.py's MLServer test skips without it.
MLSERVER_VENV := .venv-mlserver
MLSERVER_STAMP := $(MLSERVER_VENV)/.installed
$(MLSERVER_STAMP):
	test -x $(MLSERVER_VENV)/bin/python || $(PYTHON) -m venv $(MLSERVER_VENV)
	$(MLSERVER_VENV)/bin/python -m pip install --quiet 'mlserver>=1.7,<1.8' 'tensorflow-cpu>=2.21,<2.22'
	touch $(MLSERVER_STAMP)

.venv-mlserver: $(MLSERVER_STAMP)

bench-serving: $(STAMP) $(MLSERVER_STAMP) ## goodput at a p99 bound (MLPerf LoadGen), dermpipe vs MLServer: full grid, 3 repeats (hours)
	$(BIN)/python benchmarks/serving_goodput.py --json bench-serving.json

bench-serving-quick: $(STAMP) $(MLSERVER_STAMP) ## the same, 1 repeat, 15 s points, max_batch 8 and 16 at 2 ms (32 min on 2 loaded cores)
	$(BIN)/python benchmarks/serving_goodput.py --quick

clean: ## remove local runs, artifacts and the model registry (.dermpipe); keeps .venv
	rm -rf .dermpipe training.yaml
