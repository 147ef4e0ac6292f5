"""Settings shared by every stage: classes, defaults, container images, local folders."""

from __future__ import annotations

import os
from pathlib import Path

from dermpipe import __version__

# ISIC 2019 diagnoses in the column order of the official ground-truth CSV. UNK is a column of the CSV but is never
# set in the training data; a model predicts only the eight real classes.
CLASSES: tuple[str, ...] = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC")
GROUND_TRUTH_COLUMNS: tuple[str, ...] = ("image", *CLASSES, "UNK")
METADATA_COLUMNS: tuple[str, ...] = ("image", "age_approx", "anatom_site_general", "lesion_id", "sex")

SITES: tuple[str, ...] = (
    "anterior torso",
    "lower extremity",
    "head/neck",
    "upper extremity",
    "posterior torso",
    "palms/soles",
    "oral/genital",
    "lateral torso",
)
SEXES: tuple[str, ...] = ("male", "female")
# The ISIC Archive's age_approx: the age rounded to 5, ages above 85 given as 85 (isic-metadata clamps them).
AGES: tuple[int, ...] = tuple(range(0, 86, 5))

GROUND_TRUTH_CSV = "ISIC_2019_Training_GroundTruth.csv"
METADATA_CSV = "ISIC_2019_Training_Metadata.csv"
# The Kaggle archive nests the image folder inside a folder of the same name.
IMAGE_SUBDIR = "ISIC_2019_Training_Input/ISIC_2019_Training_Input"

# How train evens out the classes: TrainParams' class_balance, which the input pipeline (dermpipe.data.images)
# implements; here because the data layer implements what the model layer's parameter chooses.
# sqrt_weights: the square root of the balanced weights, halfway (on a log scale) between none and weights: the
# majority class keeps more of its accuracy while the rare ones still count (the laptop recipe sweep, docs/stages/).
CLASS_BALANCES: tuple[str, ...] = ("weights", "sqrt_weights", "oversample", "none")

MODEL_NAME = "dermpipe-isic2019"
# a registry version's model card (dermpipe.deploy.model_card), read by the CLI and the UI
MODEL_CARD_JSON, MODEL_CARD_HTML = "model_card.json", "model_card.html"

# Container images. Every task runs dermpipe's own image; train runs the GPU trainer image; `dermpipe serve` runs in
# the serving image. Registry and tag come from $DERMPIPE_IMAGE_REGISTRY / $DERMPIPE_IMAGE_TAG (CLI flags override);
# the tag defaults to the package version, so a release's code and its images move together.
REGISTRY_ENV = "DERMPIPE_IMAGE_REGISTRY"
TAG_ENV = "DERMPIPE_IMAGE_TAG"
DEFAULT_IMAGE_REGISTRY = "us-docker.pkg.dev/dermpipe/dermpipe"
IMAGE_NAMES: tuple[str, ...] = ("base", "trainer-gpu", "serving")


def image_registry() -> str:
    return os.environ.get(REGISTRY_ENV) or DEFAULT_IMAGE_REGISTRY


def image_tag() -> str:
    return os.environ.get(TAG_ENV) or __version__


def image(name: str, registry: str | None = None, tag: str | None = None) -> str:
    """Full reference of one of dermpipe's images, e.g. image("base") -> us-docker.pkg.dev/P/dermpipe/base:0.1.0."""
    if name not in IMAGE_NAMES:
        raise ValueError(f"unknown image {name!r}; dermpipe builds {', '.join(IMAGE_NAMES)} (images/<name>.Dockerfile)")
    return f"{(registry or image_registry()).rstrip('/')}/{name}:{tag or image_tag()}"


IMAGE_REGISTRY = image_registry()
BASE_IMAGE = image("base")
GPU_IMAGE = image("trainer-gpu")
SERVING_IMAGE = image("serving")


def home() -> Path:
    """Root of local state (pipeline artifacts, run records, model registry): $DERMPIPE_HOME or ./.dermpipe."""
    return Path(os.environ.get("DERMPIPE_HOME", ".dermpipe")).resolve()


def default_pipeline_root() -> Path:
    return home() / "artifacts"


def default_registry_root() -> Path:
    return home() / "registry"
