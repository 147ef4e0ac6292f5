"""The data stages' parameter sets (ingest, merge, split, prepare): names, types, defaults and help in one place.

Kept apart from the stage logic (which imports pandas and kfp) so that `dermpipe run --help`, whose options are
derived from these, stays quick. The components build them by keyword; the parameter agreement test checks that
the component, pipeline and CLI signatures agree with them.
"""

from dataclasses import dataclass

from dermpipe.componentkit import param


@dataclass(frozen=True)
class IngestParams:
    source: str = param("demo", "demo | folder or .zip in the Kaggle ISIC 2019 layout | kaggle:OWNER/DATASET | "
                                "isic:COLLECTION_OR_QUERY | gs://BUCKET/PREFIX")
    source_fingerprint: str = param("", "changes when the source's files do (the ingest task's cache key); "
                                        "`dermpipe run` computes it")
    demo_images: int = param(400, "size of the generated demo data set")


@dataclass(frozen=True)
class MergeParams:
    invalid_images: str = param("drop", "drop (and report) or fail on corrupt/non-RGB/bomb images")


@dataclass(frozen=True)
class SplitParams:
    test_size: float = param(0.1, "fraction of lesions in the test split (the seed notebook's split)")
    val_size: float = param(0.1, "fraction of lesions in the validation split")
    seed: int = param(42, "seed of the lesion-grouped split (prepare shuffles its shards with it too)")
    folds: int = param(0, "also assign k cross-validation folds to train+val (0: off)")


@dataclass(frozen=True)
class PrepareParams:
    image_size: int = param(224, "side of the centre-cropped square images in the shards (the training resolution)")
    shard_size_mb: float = param(150.0, "target size of one TFRecord shard in MB")
    seed: int = param(42, "seed of the shards' shuffle (the pipeline passes split_seed)")
