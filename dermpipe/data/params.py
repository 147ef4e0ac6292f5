"""The data stages' parameter sets (ingest, merge, split, prepare): names, types, defaults and help in one place.

Kept apart from the stage logic (which imports pandas and kfp) so that `dermpipe run --help`, whose options are
derived from these, stays quick, and so that `dermpipe run`'s pre-flight (dermpipe.pipelines.preflight) can call the
same checks the stages call (`check()` and the check_* functions) without starting anything. The components build
them by keyword; the parameter agreement test checks that the component, pipeline and CLI signatures agree with them.
"""

from dataclasses import dataclass

from dermpipe.componentkit import param

INVALID_IMAGES = ("drop", "fail")
# How train evens out the classes (dermpipe.data.images reads its input with one of these).
CLASS_BALANCES = ("weights", "oversample", "none")
# How split assigns groups (dermpipe.data.split): by a stable hash of the group key, or stratified group k-fold.
SPLIT_METHODS = ("hash", "stratified")


def check_choice(stage: str, name: str, value: str, allowed: tuple[str, ...]) -> None:
    """`value` is one of `allowed`, else an error naming the stage's parameter and the choices."""
    if value not in allowed:
        raise ValueError(f"{stage} parameter {name}={value!r} is not supported; choose one of {list(allowed)}")


# A frozen benchmark set by name (its latest version) or name@vN (dermpipe.data.benchmark); a .json URI otherwise.
BENCHMARK_REF = r"^(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*?)(@v(?P<version>\d+))?$"


def check_benchmark_set(spec: str) -> None:
    """'' (none), NAME, NAME@vN or the URI of a benchmark .json file."""
    import re

    spec = spec.strip()
    if spec and not spec.endswith(".json") and not re.match(BENCHMARK_REF, spec):
        raise ValueError(f"benchmark_set={spec!r}: expected NAME, NAME@vN or the URI of a benchmark .json file")


def check_split_size(size: float) -> None:
    """A held-out fraction split can take: one fold of a k-fold with k = round(1/size) >= 2."""
    if not 0.0 < size < 0.5:
        raise ValueError(f"split size {size} is out of range; expected a fraction in (0, 0.5)")


def check_folds(folds: int) -> None:
    if folds != 0 and folds < 2:
        raise ValueError(f"folds={folds}: expected 0 (no cross-validation folds) or at least 2")


def check_image_size(image_size: int) -> None:
    """Below 8 px no backbone has a feature map left; a typo (e.g. 2 for 224) is the usual cause."""
    if image_size < 8:
        raise ValueError(f"image_size={image_size}: expected the training resolution in pixels (e.g. 224)")


def check_shard_size(shard_bytes: float) -> None:
    if shard_bytes <= 0:
        raise ValueError(f"shard size must be positive, got {shard_bytes} bytes")


@dataclass(frozen=True)
class IngestParams:
    source: str = param("demo", "demo | folder or .zip in the Kaggle ISIC 2019 layout | kaggle:OWNER/DATASET | "
                                "isic:COLLECTION_OR_QUERY | gs://BUCKET/PREFIX")
    source_fingerprint: str = param("", "changes when the source's files do (the ingest task's cache key); "
                                        "`dermpipe run` computes it")
    demo_images: int = param(400, "size of the generated demo data set")
    feedback_log_root: str = param("", "retrain on feedback: the served model's log folder (<serve --log-root>/<model "
                                       "name>, local or gs://); its labelled, logged images join the data set "
                                       "('': none)")
    feedback_retention_days: int = param(365, "feedback images predicted more than this many days ago are skipped "
                                              "(and listed); 0: no limit")
    feedback_fingerprint: str = param("", "changes when new labels arrive (the ingest task's cache key); `dermpipe "
                                          "run` and the retrain trigger compute it")

    def check(self, *, local: bool = True) -> None:
        """What ingest would refuse before reading anything: a missing folder or zip, a malformed kaggle:, isic: or
        gs:// source, missing credentials (`local`: this machine's; a cluster run brings its own), no demo images."""
        from dermpipe.data.sources.spec import check_source

        check_source(self.source, local=local)
        if self.source.strip() == "demo" and self.demo_images < 1:
            raise ValueError(f"demo_images={self.demo_images}: expected at least 1 image for the demo data set")
        if self.feedback_retention_days < 0:
            raise ValueError(f"feedback_retention_days={self.feedback_retention_days}: expected days >= 0 (0: all)")


@dataclass(frozen=True)
class MergeParams:
    invalid_images: str = param("drop", "drop (and report) or fail on corrupt/non-RGB/bomb images")

    def check(self) -> None:
        check_choice("merge", "invalid_images", self.invalid_images, INVALID_IMAGES)


@dataclass(frozen=True)
class SplitParams:
    test_size: float = param(0.1, "fraction of lesions in the test split (the seed notebook's split)")
    val_size: float = param(0.1, "fraction of lesions in the validation split")
    seed: int = param(42, "seed of the lesion-grouped split (prepare shuffles its shards with it too)")
    folds: int = param(0, "also assign k cross-validation folds to train+val (0: off)")
    method: str = param("hash", "hash (a group's split never changes when data is added) | stratified (stratified "
                                "group k-fold: closer class shares, but groups move when the data changes)")
    benchmark_uri: str = param("", "the frozen benchmark set's JSON file, whose groups all go to test "
                                   "(resolve-benchmark's output; empty: none)")

    def check(self) -> None:
        check_choice("split", "method", self.method, SPLIT_METHODS)
        check_split_size(self.test_size)
        check_split_size(self.val_size)
        check_folds(self.folds)


@dataclass(frozen=True)
class PrepareParams:
    image_size: int = param(224, "side of the centre-cropped square images in the shards (the training resolution)")
    shard_size_mb: float = param(150.0, "target size of one TFRecord shard in MB")
    seed: int = param(42, "seed of the shards' shuffle (the pipeline passes split_seed)")

    def check(self) -> None:
        check_image_size(self.image_size)
        check_shard_size(self.shard_size_mb * 1e6)
