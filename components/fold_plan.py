"""fold-plan: the KFP component (signature, one library call); the logic is dermpipe.model.training.fold_plan. Its
single unnamed output, the list of fold indices, is what the cross-validation ParallelFor iterates over (a
ParallelFor takes a list, and `folds` is an int parameter known only at run time)."""

from typing import List  # noqa: UP035 - KFP's return annotation needs typing.List

from dermpipe.componentkit import stage_component


@stage_component()
def fold_plan(folds: int, sweep: str = "") -> List[int]:  # noqa: UP006
    """The iterations 0..configurations*folds-1 (folds >= 2; no sweep: one configuration)."""
    from dermpipe.model.training.fold_plan import run

    return run(folds, sweep)
