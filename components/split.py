"""split: the KFP component (signature, parameters, one library call); the logic is dermpipe.data.split."""

from kfp.dsl import Dataset, Input, Markdown, Metrics, Output

from dermpipe.componentkit import stage_component


@stage_component()
def split(merged: Input[Dataset], train: Output[Dataset], val: Output[Dataset], test: Output[Dataset],
          stats: Output[Metrics], report: Output[Markdown], test_size: float = 0.1, val_size: float = 0.1,
          seed: int = 42, folds: int = 0, method: str = "hash", benchmark_uri: str = "", file: str = "",
          file_sha256: str = ""):
    """Lesion-grouped, duplicate-aware train/val/test split, by a stable hash of each group's key or stratified, or
    the split a CSV file gives (+ `fold` column when folds > 0); a frozen benchmark set's groups all go to test."""
    from dermpipe.data.split import SplitParams, run

    params = SplitParams(test_size=test_size, val_size=val_size, seed=seed, folds=folds, method=method,
                         benchmark_uri=benchmark_uri, file=file, file_sha256=file_sha256)
    run(merged, train, val, test, stats, report, test_size=params.test_size, val_size=params.val_size,
        seed=params.seed, folds=params.folds, method=params.method, benchmark_uri=params.benchmark_uri,
        file=params.file, file_sha256=params.file_sha256)
