"""prepare: the KFP component (signature, parameters, one library call); the logic is dermpipe.data.prepare."""

from kfp.dsl import Dataset, Input, Metrics, Output

from dermpipe.componentkit import stage_component


@stage_component()
def prepare(raw: Input[Dataset], train_split: Input[Dataset], val_split: Input[Dataset],
            test_split: Input[Dataset], shards: Output[Dataset], stats: Output[Metrics], image_size: int = 224,
            shard_size_mb: float = 150.0, seed: int = 42):
    """Decode each image once, centre-crop + resize to image_size, write ~shard_size_mb TFRecord shards + manifest."""
    from dermpipe.data.prepare import PrepareParams, run

    params = PrepareParams(image_size=image_size, shard_size_mb=shard_size_mb, seed=seed)
    run(raw, train_split, val_split, test_split, shards, stats, params.image_size, params.shard_size_mb, params.seed)
