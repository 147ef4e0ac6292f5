"""The explain stage: a Grad-CAM and Grad-CAM++ gallery of the most confident correct predictions and the most
confident errors per class, as PNGs and an HTML page; ExplainParams, its parameters.

What the model looked at when it was right and when it was wrong. The maps, the choice of examples and the gallery
are dermpipe.model.evaluation.gradcam's (the server's :explain route uses the same code); pre-flight imports
ExplainParams, so they, TensorFlow, pandas and kfp are imported inside run().
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dermpipe.componentkit import param

if TYPE_CHECKING:
    from kfp.dsl import HTML, Artifact, Dataset, Model


@dataclass(frozen=True)
class ExplainParams:
    per_class: int = param(2, "Grad-CAM examples per class and outcome (confident hits and misses)")


def run(raw: Dataset, model: Model, predictions: Dataset, gallery: HTML, pngs: Artifact, per_class: int) -> None:
    import pandas as pd

    from dermpipe.data.images import load_images
    from dermpipe.lineage.artifacts import annotate
    from dermpipe.model.ensemble import is_ensemble
    from dermpipe.model.evaluation.gradcam import CAM_METHODS, cam_layer, cam_maps, select_examples, write_gallery
    from dermpipe.model.metadata_inputs import image_size as model_image_size
    from dermpipe.model.metadata_inputs import raw_columns, takes_metadata
    from dermpipe.model.zoo import load_classifier

    trained = load_classifier(Path(model.path) / "model.keras")
    image_size = model_image_size(trained)
    examples = select_examples(pd.read_parquet(predictions.path), per_class)
    images = load_images(examples, Path(raw.path), image_size)
    targets = examples["predicted_index"].astype(int).tolist()
    metadata = raw_columns(examples) if takes_metadata(trained) else None
    methods = ["gradcam"] if is_ensemble(trained) else list(CAM_METHODS)
    maps = {method: cam_maps(trained, images, targets, method, metadata) for method in methods}
    html = write_gallery(examples, images, maps, Path(pngs.path))
    Path(gallery.path).write_text(html)
    annotate(gallery, {"method": methods, "layer": cam_layer(trained),
                       "examples": len(examples), "correct": int(examples["correct"].sum()), "model_uri": model.uri,
                       "pngs_uri": pngs.uri, "metadata_held_fixed": metadata is not None})
    annotate(pngs, {"files": sorted(p.name for p in Path(pngs.path).iterdir())})
