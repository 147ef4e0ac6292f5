"""`dermpipe models show|card VERSION`: a version's model card (dermpipe.deploy.model_card) in a few lines."""

from __future__ import annotations

import json
from typing import Any

import typer

from dermpipe import storage
from dermpipe.config import MODEL_CARD_HTML as CARD_HTML
from dermpipe.config import MODEL_CARD_JSON as CARD_JSON
from dermpipe.data.licences import ATTRIBUTION_FILE


def has_card(version_uri: str) -> bool:
    return storage.exists(storage.join(version_uri, CARD_HTML))


def _version_uri(root: str, model_name: str, version: int) -> str:
    from dermpipe.deploy import registry

    if not registry.is_servable(root, model_name, version):
        known = ", ".join(map(str, registry.versions(root, model_name))) or "none"
        typer.echo(f"{registry.model_dir(root, model_name)}: no committed version {version} (versions: {known})",
                   err=True)
        raise typer.Exit(2)
    return registry.version_dir(root, model_name, version)


def read_card(root: str, model_name: str, version: int) -> tuple[dict[str, Any], str]:
    """(card, version URI); exit 2 naming the command that writes one when the version has no card."""
    uri = _version_uri(root, model_name, version)
    try:
        return json.loads(storage.read_bytes(storage.join(uri, CARD_JSON))), uri
    except FileNotFoundError:
        typer.echo(f"{uri}: no {CARD_JSON} (pushed before model cards existed); write it with "
                   f"`dermpipe models card {version}`", err=True)
        raise typer.Exit(2) from None


def write_version_card(root: str, model_name: str, version: int) -> tuple[dict[str, Any], str]:
    from dermpipe.deploy.model_card import write_card

    uri = _version_uri(root, model_name, version)
    return write_card(uri), uri


def _interval(evaluation: dict[str, Any]) -> str:
    interval = evaluation.get("balanced_accuracy_interval") or {}
    return f" (95 % interval {interval['lower']:.3f}-{interval['upper']:.3f})" if interval else ""


def _points(card: dict[str, Any]) -> list[str]:
    lines = []
    for point in card["operating_points"]:
        test = point.get("test") or {}
        valid = {True: ", valid", False: ", NOT valid"}.get(point.get("valid"), "")
        figures = ", ".join(f"{k} {test[k]:.3f}" for k in ("sensitivity", "specificity") if test.get(k) is not None)
        lines.append(f"  {point['name']}{' (default)' if point.get('default') else ''}: threshold "
                     f"{point.get('threshold', float('nan')):.3f}, chosen on {point.get('chosen_on', '?')}{valid}"
                     + (f"; test {figures}" if figures else ""))
    return lines or ["  none (no clinical.json): answers carry no decision"]


def _gate(gate: dict[str, Any]) -> str:
    """The gate's decision, and for an override who, when and why (the fields the override recorded)."""
    details = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in gate.items()
                        if k != "decision" and not isinstance(v, dict | list))
    failed = gate.get("failed_rules")
    return gate["decision"] + (f" ({details})" if details else "") + (f"; failed: {'; '.join(failed)}" if failed
                                                                      else "")


def _licence_counts(summary: dict[str, Any] | None, uri: str) -> str:
    """' (CC-BY-NC-4.0 800, unknown 12; attributions: <uri>/attribution.txt)' when the version recorded licences."""
    if not summary:
        return ""
    counts = ", ".join(f"{licence} {n}" for licence, n in (summary.get("licences") or {}).items())
    return f" ({counts}; attributions: {storage.join(uri, ATTRIBUTION_FILE)})"


def _official(score: dict[str, Any] | None) -> str:
    """The official scorer's headline figures, or why there are none."""
    if not score:
        return "not recorded (evaluated before evaluate ran isic-challenge-scoring)"
    shown = {"balanced_accuracy": "BMA", "auc": "mean AUC", "auc_sens_80": "mean AUC80", "ap": "mean AP"}
    return ", ".join(f"{name} {score[key]:.3f}" for key, name in shown.items() if score.get(key) is not None) + (
        f" over {score['classes_scored']} classes" if score.get("classes_scored") is not None else "")


def card_lines(card: dict[str, Any], uri: str) -> list[str]:
    """The card's key facts, its limitations and its files, for the terminal."""
    from dermpipe.data.licences import verdict

    details, data, evaluation = card["model_details"], card["training_data"], card["evaluation"]
    rows = data["rows"]
    collections = "; ".join(f"{c['collection']} {c['images']} ({c['licence']})" for c in data["collections"])
    bma = evaluation.get("balanced_accuracy")
    lines = [f"model card: {details['name']} version {details['version']} (created {details['created']})",
             f"model: {details['architecture']} at {details['image_size']} px, digest {str(details['digest'])[:12]}, "
             f"from {details['source_model_uri']}",
             f"training data: {', '.join(f'{split} {n}' for split, n in rows.items())} images; "
             f"{collections or 'collections unknown'}",
             f"licences: {verdict(data.get('licences'))}" + _licence_counts(data.get("licences"), uri),
             "test balanced accuracy: " + ("not recorded" if bma is None else f"{bma:.3f}{_interval(evaluation)}"),
             f"ISIC challenge score: {_official(evaluation.get('isic_challenge_score'))}",
             "operating points:", *_points(card),
             f"gate: {_gate(card['gate'])}", "limitations:", *(f"  - {line}" for line in card["limitations"]),
             f"caveat: {card['caveat']}", f"card: {storage.join(uri, CARD_HTML)}",
             f"json: {storage.join(uri, CARD_JSON)}"]
    return lines
