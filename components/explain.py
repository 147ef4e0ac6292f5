"""explain: Grad-CAM heat maps (tf-keras-vis) for a sample of test images, as PNGs and an HTML gallery.

Per class it shows the most confident correct predictions and the most confident errors: what the model looked at
when it was right and when it was wrong.
"""

from pathlib import Path

import numpy as np
import pandas as pd
from kfp.dsl import HTML, Artifact, Dataset, Input, Model, Output

from dermpipe import config
from dermpipe.componentkit import stage_component


def last_feature_map_layer(model):
    """The last layer with a 4-D (batch, h, w, channels) output, searched from the end, inside nested models too."""
    import keras

    for layer in reversed(model.layers):
        if isinstance(layer, keras.Model):
            inner = last_feature_map_layer(layer)
            if inner is not None:
                return inner
        shape = getattr(layer, "output", None)
        shape = getattr(shape, "shape", None)
        if shape is not None and len(shape) == 4 and not layer.name.startswith(("augmentation", "image")):
            return layer
    return None


def select_examples(predictions: pd.DataFrame, per_class: int) -> pd.DataFrame:
    """Per true class: the `per_class` most confident correct predictions and the `per_class` most confident errors."""
    predictions = predictions.assign(correct=predictions["label"] == predictions["predicted"])
    picked = (
        predictions.sort_values("confidence", ascending=False)
        .groupby(["label", "correct"], sort=False)
        .head(per_class)
    )
    order = {c: i for i, c in enumerate(config.CLASSES)}
    return picked.sort_values(["label", "correct", "confidence"], key=lambda s: s.map(order) if s.name == "label"
                              else s, ascending=[True, False, False]).reset_index(drop=True)


def gradcam_maps(model, images: np.ndarray, class_indices: list[int]) -> np.ndarray:
    """Grad-CAM maps in [0, 1] at input resolution, one per image, for the given class of each image."""
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    layer = last_feature_map_layer(model)
    if layer is None:
        raise ValueError(f"model {model.name}: no convolutional feature map found for Grad-CAM")
    cam = Gradcam(model, model_modifier=ReplaceToLinear(), clone=True)
    maps = cam(CategoricalScore(class_indices), images, penultimate_layer=layer.name, normalize_cam=True)
    return np.nan_to_num(np.asarray(maps, dtype=np.float32))


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.4) -> np.ndarray:
    """Blend a jet-coloured heat map over the image; both at the same resolution; uint8 RGB out."""
    from matplotlib import colormaps

    colour = colormaps["jet"](np.clip(heatmap, 0, 1))[..., :3] * 255
    return np.clip(image * (1 - alpha) + colour * alpha, 0, 255).astype(np.uint8)


def write_gallery(examples: pd.DataFrame, images: np.ndarray, maps: np.ndarray, out_dir: Path) -> str:
    """PNGs (original, heatmap, overlay) per example under out_dir and the gallery HTML, which is returned."""
    from matplotlib import colormaps
    from PIL import Image

    from dermpipe.reports import img_tag, page

    out_dir.mkdir(parents=True, exist_ok=True)
    sections = []
    for cls in config.CLASSES:
        rows = examples[examples["label"] == cls]
        if rows.empty:
            continue
        figures = []
        for idx, row in rows.iterrows():
            heat = (colormaps["jet"](maps[idx])[..., :3] * 255).astype(np.uint8)
            parts = {"original": images[idx].astype(np.uint8), "heatmap": heat,
                     "overlay": overlay(images[idx], maps[idx])}
            tags = []
            for kind, pixels in parts.items():
                png = out_dir / f"{row['image']}_{kind}.png"
                Image.fromarray(pixels).save(png)
                tags.append(img_tag(png.read_bytes(), f"{row['image']} {kind}", width=128))
            verdict = "good" if row["correct"] else "bad"
            caption = (f"{row['image']}<br>true <b>{row['label']}</b> · predicted "
                       f"<b class='{verdict}'>{row['predicted']}</b> · confidence {row['confidence']:.2f}")
            figures.append(f"<figure>{''.join(tags)}<figcaption>{caption}</figcaption></figure>")
        sections.append(f"<h2>{cls}</h2><div class='gallery'>{''.join(figures)}</div>")
    intro = ("<p>Grad-CAM (tf-keras-vis) for the predicted class: original, heat map, overlay. Per class the most "
             "confident correct predictions come first, then the most confident errors.</p>")
    return page("Grad-CAM gallery (test split)", intro + "".join(sections))


def run(raw: Dataset, model: Model, predictions: Dataset, gallery: HTML, pngs: Artifact, per_class: int) -> None:
    import keras

    from dermpipe.imagedata import load_images
    from dermpipe.lineage import annotate

    trained = keras.models.load_model(Path(model.path) / "model.keras")
    image_size = int(trained.input_shape[1])
    examples = select_examples(pd.read_parquet(predictions.path), per_class)
    images = load_images(examples, Path(raw.path), image_size)
    maps = gradcam_maps(trained, images, examples["predicted_index"].astype(int).tolist())
    html = write_gallery(examples, images, maps, Path(pngs.path))
    Path(gallery.path).write_text(html)
    annotate(gallery, {"method": "gradcam", "layer": last_feature_map_layer(trained).name, "examples": len(examples),
                       "correct": int(examples["correct"].sum()), "model_uri": model.uri, "pngs_uri": pngs.uri})
    annotate(pngs, {"files": sorted(p.name for p in Path(pngs.path).iterdir())})


@stage_component()
def explain(raw: Input[Dataset], model: Input[Model], predictions: Input[Dataset], gallery: Output[HTML],
            gradcam_pngs: Output[Artifact], per_class: int = 2):
    """Grad-CAM gallery of confident hits and misses per class."""
    from dermpipe.components.explain import run

    run(raw, model, predictions, gallery, gradcam_pngs, per_class)
