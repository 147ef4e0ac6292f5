"""Model cards in the UI: the deployed versions the lineage store knows (deploy outputs' registry URIs) and their
model_card.html / model_card.json, served from the registry version folder (local registries only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import HTTPException
from fastapi.responses import FileResponse

from dermpipe.config import MODEL_CARD_HTML, MODEL_CARD_JSON
from dermpipe.lineage.store import Store
from dermpipe.lineage.ui.files import HTML_CSP, REMOTE


def card_path(registry_uri: str, name: str = MODEL_CARD_HTML) -> Path | None:
    """The version's card file when the registry is local and the card is there, else None."""
    if registry_uri.startswith(REMOTE):
        return None
    path = Path(registry_uri) / name
    return path if path.is_file() else None


def commercial_use(registry_uri: str) -> str:
    """What the version's training images' licences allow (dermpipe.json's licences.commercial_use: allowed | not
    allowed | unknown), or why it cannot be shown."""
    import json

    record = card_path(registry_uri, "dermpipe.json")
    if record is None:
        return "not shown (remote registry)" if registry_uri.startswith(REMOTE) else "unknown (no dermpipe.json)"
    try:
        licences = json.loads(record.read_text()).get("licences") or {}
    except (OSError, ValueError):
        return "unknown (dermpipe.json unreadable)"
    return str(licences.get("commercial_use") or "unknown (licences not recorded)")


def versions(store: Store) -> list[dict[str, Any]]:
    """Deployed versions, each with its registry URI, whether it has a card and what its training images' licences
    allow (models.html's rows)."""
    found = store.model_versions() if store.exists() else []
    return [{"name": name, "version": version, "uri": uri, "card": card_path(uri) is not None,
             "commercial_use": commercial_use(uri)} for name, version, uri in found]


def card_response(store: Store, model_name: str, version: int, name: str) -> FileResponse:
    """The card file of a deployed version; 404 naming what is missing and the command that writes it."""
    known = {(n, v): uri for n, v, uri in (store.model_versions() if store.exists() else [])}
    uri = known.get((model_name, version))
    if uri is None:
        raise HTTPException(404, f"no deployed version {model_name}/{version} in the lineage store {store.path}")
    path = card_path(uri, name)
    if path is None:
        where = "a remote registry (open it there)" if uri.startswith(REMOTE) else "this version's folder"
        raise HTTPException(404, f"no {name} in {where}: {uri}; write it with `dermpipe models card {version} "
                                 f"--model-name {model_name}`")
    media = "text/html" if name == MODEL_CARD_HTML else "application/json"
    return FileResponse(path, media_type=media, headers={"Content-Security-Policy": HTML_CSP,
                                                         "X-Content-Type-Options": "nosniff"})


CARD_FILES = {"card": MODEL_CARD_HTML, "card.json": MODEL_CARD_JSON}
