"""`dermpipe lineage` and `dermpipe ui`: the local lineage store in the terminal and in a browser."""

from __future__ import annotations

import json

import typer


def lineage(
    ref: str = typer.Argument(..., help="RUN_ID | ARTIFACT_URI | model:<name>/<version>"),
    as_json: bool = typer.Option(False, "--json", help="print the graph as JSON (for scripts)"),
) -> None:
    """Lineage of a run, an artifact or a deployed model version, as a tree.

    Upstream: which data, split, parameters and code produced it. Downstream: which tasks and runs consumed it.
    For a run: what each task read and wrote."""
    from dermpipe.lineage.store import Store
    from dermpipe.lineage.tree import LineageError, render_lineage
    from dermpipe.lineage.tree import lineage as build

    try:
        answer = build(Store(), ref)
    except LineageError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(2) from err
    typer.echo(json.dumps(answer, indent=1, default=str) if as_json else render_lineage(answer))


def ui(
    host: str = typer.Option("127.0.0.1", help="interface to listen on (keep 127.0.0.1 unless you mean to share)"),
    port: int = typer.Option(8765, help="TCP port"),
) -> None:
    """Local web UI: runs, DAGs, reports, lineage graphs, run comparison.

    Reads $DERMPIPE_HOME (the lineage store and the artifacts it names)."""
    import uvicorn

    from dermpipe import config
    from dermpipe.lineage.ui.app import create_app

    typer.echo(f"dermpipe ui: http://{host}:{port}/  (reading {config.home()}; Ctrl-C stops it)")
    uvicorn.run(create_app(), host=host, port=port, log_level="warning")


def register(app: typer.Typer) -> None:
    app.command()(lineage)
    app.command()(ui)
