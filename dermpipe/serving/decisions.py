"""The decision every protocol answers beside the probabilities: refer_melanoma | routine | out_of_distribution, why
(decision_reason: above all when MEL is the most probable class but the answer is routine), the operating point used
and the OOD score, from the version's clinical.json (dermpipe.model.profile.clinical).

A request names another stored operating point (`operating_point`); an unknown name, or a point stored as not
achievable by this model, is the client's error (400) and is refused before the images run. A version deployed
without clinical.json answers the fields as null; one whose default point is not achievable answers decision null
with the reason.
"""

import numpy as np

from dermpipe.serving.models import ServedModel
from dermpipe.serving.settings import ServingError

FIELDS = ("decision", "decision_reason", "operating_point", "melanoma_threshold", "ood_score", "ood_threshold")


def check_operating_point(model: ServedModel, name: str | None) -> None:
    """Refuse a name the version does not store (400), listing the stored ones."""
    if not name:
        return
    if model.clinical is None:
        raise ServingError(400, f"operating_point {name!r}: {model.name} version {model.version} stores no operating "
                                "points (deployed without clinical.json); leave operating_point out")
    try:
        point = model.clinical.point(name)
    except KeyError as err:
        raise ServingError(400, f"operating_point {name!r}: {err.args[0]}") from None
    if not point.valid:
        raise ServingError(400, f"operating_point {name!r} is not achievable by {model.name} version "
                                f"{model.version} ({point.invalid}); it decides nothing: leave operating_point out or "
                                "name a valid one")


def decide(model: ServedModel, probabilities: np.ndarray, embedding: np.ndarray, name: str | None) -> list[dict]:
    """One dict of FIELDS per image (all None for a version without clinical.json)."""
    if model.clinical is None:
        return [dict.fromkeys(FIELDS) for _ in range(len(probabilities))]
    return model.clinical.decide(probabilities, embedding, model.pca, name)


def columns(decisions: list[dict]) -> dict[str, list]:
    """The decisions as columns (columnar and tensor outputs): field -> one value per image."""
    return {field: [d[field] for d in decisions] for field in FIELDS}
