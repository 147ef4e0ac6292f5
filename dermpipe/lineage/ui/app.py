"""create_app: the `dermpipe ui` FastAPI app, its lineage store and Jinja2 templates on app.state, and the routes."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi import FastAPI
from fastapi.templating import Jinja2Templates

from dermpipe.lineage.store import Store
from dermpipe.lineage.tree import plain
from dermpipe.lineage.ui.routes import router

TEMPLATES = Path(__file__).parent / "templates"


def make_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(TEMPLATES))
    templates.env.filters["plain"] = plain
    templates.env.filters["tojson_pretty"] = lambda v: json.dumps(v, indent=1, sort_keys=True, default=str)
    return templates


def create_app(store: Store | None = None) -> FastAPI:
    """The FastAPI app over a lineage store (default: $DERMPIPE_HOME/lineage.sqlite)."""
    store = store or Store()
    app = FastAPI(title="dermpipe", docs_url=None, redoc_url=None)
    app.state.store = store
    app.state.templates = make_templates()
    app.include_router(router)
    return app
