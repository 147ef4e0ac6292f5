"""The model card's limitations, each written from the card's own figures (dermpipe.deploy.model_card): what the data
do not cover, where the test figures rest on too few images, and what could not be read."""

from __future__ import annotations

from typing import Any

FEW_TEST_IMAGES = 30  # below this a class's recall interval spans more than about +-0.15 (Wilson, 95 %)
SKIN_TYPE_COLUMNS = ("fitzpatrick", "fitzpatrick_skin_type", "skin_type", "skin_tone")
COLLECTION_OF_DEMO = "dermpipe demo data"


def skin_type(columns: list[str]) -> list[str]:
    if not columns:
        return ["Skin type: the training tables could not be read, so it is unknown whether skin type was recorded "
                "or which skin types the model saw."]
    if any(c in columns for c in SKIN_TYPE_COLUMNS):
        return []
    return ["Skin type (Fitzpatrick) was not recorded in the training data, so performance on darker skin is "
            "unknown."]


def data_origin(collections: list[dict[str, Any]]) -> list[str]:
    total = sum(c["images"] for c in collections)
    lines = []
    for c in collections:
        share = f"{c['images']} of {total} training images"
        if c["collection"].startswith(COLLECTION_OF_DEMO):
            lines.append(f"Trained on synthetic demo lesions ({share}): this model has never seen a real lesion; its "
                         "figures say nothing about patients and it must not advise on them.")
        elif c["collection"].startswith("collection not recorded"):
            lines.append(f"The collection (and so the clinic, device and population) of {share} is not recorded "
                         "(no lesion_id); performance on another clinic's images is not measured.")
    return lines


def classes(counts: dict[str, dict[str, int]], per_class: list[dict[str, Any]]) -> list[str]:
    lines = []
    train = counts.get("train") or counts.get("train+val") or {}
    untrained = [cls for cls, n in train.items() if n == 0]
    if untrained:
        lines.append(f"No training images of {', '.join(untrained)}: the model cannot recognise these diagnoses.")
    for row in per_class:
        n = row.get("n")
        if n is None or row["class"] in untrained:
            continue
        if n == 0:
            lines.append(f"{row['class']}: no test images, so its recall is not measured.")
        elif n < FEW_TEST_IMAGES:
            low, high = row["recall_interval"]
            recall = "not recorded" if row.get("recall") is None else f"{row['recall']:.2f}"
            lines.append(f"{row['class']}: only {n} test image{'s' * (n != 1)} (fewer than {FEW_TEST_IMAGES}): its "
                         f"recall {recall} has a 95 % interval of {low:.2f}-{high:.2f}.")
    return lines


def metadata(shares: dict[str, dict[str, float]]) -> list[str]:
    lines = []
    for field in ("age", "sex", "anatomic site"):
        found = {split: s[field] for split, s in shares.items() if field in s and s[field] > 0}
        if found:
            where = ", ".join(f"{share:.0%} of {split}" for split, share in found.items())
            lines.append(f"{field.capitalize()} is missing for {where} images: those images fall in the '(missing)' "
                         "slice, and performance by " + field + " is measured without them.")
    return lines


def evaluation(card: dict[str, Any]) -> list[str]:
    evaluation = card["evaluation"]
    lines = []
    interval = evaluation.get("balanced_accuracy_interval") or {}
    tested = [row for row in evaluation["per_class"] if row.get("n")]
    if interval.get("lower") is not None and tested:
        chance = 1 / len(tested)
        if interval["lower"] <= chance:
            lines.append(f"The balanced accuracy's 95 % interval ({interval['lower']:.2f}-{interval['upper']:.2f}) "
                         f"reaches chance ({chance:.2f} for {len(tested)} test classes): the test set cannot tell "
                         "this model from guessing.")
    lines += split(evaluation.get("split"))
    for point in card["operating_points"]:
        test, target = point.get("test") or {}, point.get("target_sensitivity")
        if point.get("valid") is False:
            lines.append(f"Operating point {point['name']} is not achievable by this model: "
                         f"{point.get('invalid') or 'see its figures'}; it never decides.")
        elif test.get("sensitivity") is not None and target is not None and test["sensitivity"] < target:
            lines.append(f"Operating point {point['name']} reached a test sensitivity of {test['sensitivity']:.2f} "
                         f"against its target of {target:.2f} (on {test.get('positives', '?')} test melanomas).")
    return lines


def split(found: dict[str, Any] | None) -> list[str]:
    """A split given by file (split_method=file) may put one lesion's images in train and test."""
    if not found:
        return []
    seen, groups = found.get("test_rows_with_lesion_in_train_or_val"), found.get("groups_across_splits")
    if seen is None:
        return ["The split came from a file (split_method=file) and the split stage's findings on lesions across "
                "splits were not recorded: if the file splits by image, test figures may be optimistic."]
    if not seen:
        return []
    return [f"The split came from a file that splits by image, not by lesion (split_method=file): {seen} test images "
            f"have another image of the same lesion in train or val ({groups} lesion groups cross splits), so the "
            "test figures may be optimistic next to a lesion-grouped split; compare models on this split only with "
            "each other."]


def ood(card: dict[str, Any]) -> list[str]:
    """The OOD detector's own verdict on unseen in-distribution images, and what its served score is."""
    found = card.get("ood") or {}
    if found.get("threshold_holds_on_test") is False:
        return [f"Out-of-distribution flag ({found.get('served_score', 'its score')}): {found.get('transfer_note')}."]
    return []


def licences(summary: dict[str, Any] | None) -> list[str]:
    """What the training images' licences (per image, train + val) leave the model's users to clear."""
    if not summary:
        return ["The training images' licences were not recorded (deployed without the profile's licences.json): "
                "what this model may be used for is unknown."]
    from dermpipe.data.licences import restrictions

    total, non_commercial, unknown = restrictions(summary)
    lines = [f"Trained on {non_commercial} of {total} images licensed for non-commercial use only (see the "
             "licences above): do not use this model commercially without clearing them."] if non_commercial else []
    return lines + ([f"The licence of {unknown} of {total} training images is not recorded or not recognised: what "
                     "they allow is unknown."] if unknown else [])


def limitations(card: dict[str, Any]) -> list[str]:
    """Every limitation the card's figures show, in words; the inputs that were missing come last."""
    data = card["training_data"]
    lines = [*data_origin(data["collections"]), *skin_type(data["columns"]),
             *classes(data["counts_per_class"], card["evaluation"]["per_class"]),
             *metadata(data["metadata_missing_share"]), *licences(data.get("licences")), *evaluation(card),
             *ood(card)]
    if not card["operating_points"]:
        lines.append("No operating points or OOD calibration (no clinical.json): answers carry no referral decision "
                     "and images unlike the training data are not flagged.")
    lines += [f"Not available when this card was written: {what}." for what in card["missing"]]
    return lines
