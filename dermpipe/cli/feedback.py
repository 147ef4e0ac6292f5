"""`dermpipe feedback`: ground truth (biopsy, consensus, follow-up) for logged predictions, from a CSV / JSON Lines
file or one label given by flags, validated and stored beside the prediction log (dermpipe.serving.feedback_store)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from dermpipe import config

FIELDS = ("request_id", "diagnosis", "source", "date")


def _fail(message: str) -> typer.Exit:
    typer.echo(f"dermpipe feedback: {message}", err=True)
    return typer.Exit(2)


def read_label_file(path: Path) -> list[dict[str, object]]:
    """The label items of a .csv (header request_id,diagnosis,source,date) or .jsonl file (one object a line)."""
    if not path.is_file():
        raise _fail(f"{path}: no such file")
    if path.suffix.lower() == ".csv":
        import pandas as pd

        table = pd.read_csv(path, dtype=str, keep_default_na=False)
        columns = [str(c).strip() for c in table.columns]
        if sorted(columns) != sorted(FIELDS):
            raise _fail(f"{path}: columns {columns}; expected exactly {', '.join(FIELDS)}")
        table.columns = columns
        return table.to_dict("records")
    if path.suffix.lower() not in (".jsonl", ".json", ".ndjson"):
        raise _fail(f"{path}: expected a .csv or .jsonl file")
    items: list[dict[str, object]] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                items.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise _fail(f"{path}: line {number} is not JSON ({err.msg})") from err
    return items


def _items(file: Path | None, flags: dict[str, str | None]) -> list[dict[str, object]]:
    given = {k: v for k, v in flags.items() if v}
    if file is not None and given:
        raise _fail(f"give --file or the label flags, not both (got --file and --{', --'.join(given)})")
    if file is not None:
        items = read_label_file(file)
        if not items:
            raise _fail(f"{file}: no labels in it")
        return items
    if not given:
        raise _fail("no labels: give --file labels.csv, or --request-id, --diagnosis, --source and --date")
    return [{k: flags[k] for k in FIELDS if flags[k]}]


def os_user_audit() -> dict[str, str]:
    """The audit fields of labels stored from this shell: the OS user (no token: the CLI writes to the store
    directly, with the storage's own credentials) and the host it ran on."""
    import getpass
    import os
    import socket

    try:
        user = getpass.getuser()  # $LOGNAME, $USER, ..., then the password database
    except (KeyError, OSError):  # a container user without a passwd entry (OSError from Python 3.13)
        user = f"uid:{os.getuid()}"
    return {"submitted_by": user, "auth": "os-user", "client": socket.gethostname()}


def feedback(
    log_root: str = typer.Option(..., help="prediction log root of `dermpipe serve --log-root` (local or gs://)"),
    model_name: str = typer.Option(config.MODEL_NAME, help="the served model's name (its log folder)"),
    file: Path = typer.Option(None, "--file", "-f", help="labels: .csv with columns request_id, diagnosis, "
                                                           "source, date, or .jsonl with one such object a line"),
    request_id: str = typer.Option(None, help="one label: the request id the server answered (per image: <id>-<i>)"),
    diagnosis: str = typer.Option(None, help=f"one label: {' | '.join(config.CLASSES)}"),
    source: str = typer.Option(None, help="one label: biopsy | consensus | follow-up"),
    date: str = typer.Option(None, help="one label: the day the result was obtained, YYYY-MM-DD"),
) -> None:
    """Store ground-truth labels for logged predictions; prints each label's outcome, exits 1 if any is refused.

    Labels are checked against the prediction log (the request id must be logged), the ISIC 2019 classes and the
    labels already stored (a second, different diagnosis for a request id is refused; the same one is reported as
    already known). The accepted ones are written as one new file under <log-root>/<model>/labels/, each with the
    OS user and the host as who sent it."""
    from dermpipe.serving.feedback_store import submit_feedback

    items = _items(file, {"request_id": request_id, "diagnosis": diagnosis, "source": source, "date": date})
    try:
        result = submit_feedback(log_root, model_name, items, audit=os_user_audit())
    except (OSError, ValueError) as err:
        raise _fail(f"the label store under {log_root}: {err}") from err
    for outcome in result.outcomes:
        reason = f": {outcome.reason}" if outcome.reason else ""
        typer.echo(f"{outcome.status:<9} #{outcome.index} {outcome.request_id or '(no request id)'}{reason}")
    counts = result.counts
    typer.echo(f"{counts['accepted']} accepted, {counts['duplicate']} already known, {counts['refused']} refused"
               + (f"; stored in {result.uri} as sent by {os_user_audit()['submitted_by']}" if result.uri
                  else "; nothing written"))
    if counts["refused"]:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("feedback")(feedback)
