"""merge: the KFP component (signature, parameters, one library call); the logic is dermpipe.data.merge."""

from kfp.dsl import Dataset, Input, Markdown, Metrics, Output

from dermpipe.componentkit import stage_component


@stage_component()
def merge(raw: Input[Dataset], merged: Output[Dataset], report: Output[Markdown], stats: Output[Metrics],
          invalid_images: str = "drop"):
    """Join ground truth and metadata, check the schema, decode every image once; write the table and report.

    invalid_images: 'drop' (drop and report corrupt/truncated/non-JPEG/non-RGB/bomb images) or 'fail'.
    """
    from dermpipe.data.merge import MergeParams, run

    params = MergeParams(invalid_images=invalid_images)
    run(raw, merged, report, stats, params.invalid_images)
