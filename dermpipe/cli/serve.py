"""`dermpipe serve` and `dermpipe models list|promote|rollback|push` (registered in dermpipe/cli/main.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from dermpipe import config
from dermpipe.cli.settings_options import Scaled, field_values, option_specs, with_options
from dermpipe.serving.settings import MIB, Settings

models_app = typer.Typer(help="The versioned model registry (local folder or gs://): list, promote, roll back, "
                              "push a run the gate did not bless (--override-gate REASON).",
                         no_args_is_help=True)

REGISTRY_HELP = "registry root, a folder or gs://bucket/prefix [default: $DERMPIPE_HOME/registry]"
APPLY_KSERVE = typer.Option(True, "--apply-kserve/--no-apply-kserve",
                            help="when the model was deployed to KServe, re-point its InferenceService at the new "
                                 "current version (off: only render the manifest)")
KSERVE_MANIFEST = typer.Option(None, "--kserve-manifest", help="also write the InferenceService manifest (YAML) for "
                                                               "the new current version here")


def _root(registry_root: str | None) -> str:
    return registry_root or str(config.default_registry_root())


@models_app.command("list")
def list_models(
    model_name: str = typer.Option(config.MODEL_NAME, "--model-name", help="model in the registry"),
    registry_root: str = typer.Option(None, "--registry-root", help=REGISTRY_HELP),
) -> None:
    """List the versions of a model with their test metrics and model card; `*` marks the one being served."""
    from dermpipe.cli.model_card import has_card
    from dermpipe.deploy import registry
    root = _root(registry_root)
    rows = registry.list_versions(root, model_name)
    if not rows:
        others = registry.model_names(root)
        hint = f"; models there: {', '.join(others)}" if others else "; deploy one with `dermpipe run`"
        typer.echo(f"no versions of {model_name} in {root}{hint}")
        raise typer.Exit(1)
    names = sorted({k for r in rows for k in r.metrics}, key=list(registry.HEADLINE_METRICS).index)
    typer.echo(f"{'':2}{'VERSION':>7}  " + "".join(f"{n.upper():>27}" for n in names) + "  LICENCE         CARD  URI")
    for r in rows:
        values = "".join(f"{r.metrics[n]:>27.4f}" if n in r.metrics else f"{'-':>27}" for n in names)
        typer.echo(f"{'*' if r.current else '':2}{r.version:>7}  {values}  {r.licence:<14}  "
                   f"{'yes' if has_card(r.uri) else 'no':<4}  {r.uri}")
    if not all(has_card(r.uri) for r in rows):
        typer.echo("versions without a card: write one with `dermpipe models card VERSION`")
    licence_notes(rows)


def licence_notes(rows: list) -> None:
    """Say what the LICENCE column means wherever it is not plain commercial."""
    notes = {"non-commercial": "non-commercial: trained on images licensed for non-commercial use only (e.g. "
                               "ISIC 2019's CC-BY-NC 4.0); not for commercial use",
             "unknown": "unknown: the licence of some training images is not recorded; check the data set before "
                        "any commercial use"}
    for licence, note in notes.items():
        versions = [str(r.version) for r in rows if r.licence == licence]
        if versions:
            typer.echo(f"{note} (version {', '.join(versions)}; `dermpipe models show VERSION` for the counts)")


@models_app.command()
def show(
    version: int = typer.Argument(..., help="registry version"),
    model_name: str = typer.Option(config.MODEL_NAME, "--model-name", help="model in the registry"),
    registry_root: str = typer.Option(None, "--registry-root", help=REGISTRY_HELP),
) -> None:
    """Print a version's model card: its key facts, limitations and where the card's HTML and JSON are."""
    from dermpipe.cli.model_card import card_lines, read_card

    card, uri = read_card(_root(registry_root), model_name, version)
    typer.echo("\n".join(card_lines(card, uri)))


@models_app.command("card")
def card(
    version: int = typer.Argument(..., help="registry version"),
    model_name: str = typer.Option(config.MODEL_NAME, "--model-name", help="model in the registry"),
    registry_root: str = typer.Option(None, "--registry-root", help=REGISTRY_HELP),
) -> None:
    """(Re)write a version's model card from what the version and its source run hold (versions pushed before
    cards existed have none)."""
    from dermpipe.cli.model_card import card_lines, write_version_card

    card, uri = write_version_card(_root(registry_root), model_name, version)
    typer.echo("\n".join(card_lines(card, uri)))


@models_app.command()
def promote(
    version: int = typer.Argument(..., help="version to serve"),
    model_name: str = typer.Option(config.MODEL_NAME, "--model-name"),
    registry_root: str = typer.Option(None, "--registry-root", help=REGISTRY_HELP),
    apply_kserve: bool = APPLY_KSERVE,
    kserve_manifest: str = KSERVE_MANIFEST,
) -> None:
    """Make VERSION the current one (a running `dermpipe serve` picks it up within its poll interval)."""
    from dermpipe.deploy import registry

    _move(lambda root: registry.set_current(root, model_name, version), "current version", model_name,
          registry_root, apply_kserve, kserve_manifest)


@models_app.command()
def rollback(
    model_name: str = typer.Option(config.MODEL_NAME, "--model-name"),
    registry_root: str = typer.Option(None, "--registry-root", help=REGISTRY_HELP),
    apply_kserve: bool = APPLY_KSERVE,
    kserve_manifest: str = KSERVE_MANIFEST,
) -> None:
    """Serve the previous version (the highest one below the current version)."""
    from dermpipe.deploy import registry

    _move(lambda root: registry.rollback(root, model_name), "rolled back to version", model_name, registry_root,
          apply_kserve, kserve_manifest)


@models_app.command()
def push(
    run: str = typer.Argument(..., help="a finished local run (`dermpipe runs`) or a run's model folder"),
    override_gate: str = typer.Option(None, "--override-gate", help="REASON: why this model is deployed although "
                                      "the gate did not bless it (required; recorded with the version)"),
    model_name: str = typer.Option(config.MODEL_NAME, "--model-name"),
    registry_root: str = typer.Option(None, "--registry-root", help="registry root [default: the run's, else "
                                                                     "$DERMPIPE_HOME/registry]"),
) -> None:
    """Deploy the model of a run the gate did not bless, as a recorded human decision: who, when, why and the failed
    gate rules go into the version's dermpipe.json and the lineage; its answers carry gate_override: true."""
    from dermpipe.deploy.override import OverrideError, from_folder, from_run, push_override
    from dermpipe.pipelines.local import list_records, load_record

    try:
        if override_gate is None:
            raise OverrideError("models push deploys only what the gate did not bless, and only with "
                                "--override-gate REASON (a blessed run was deployed by its own deploy task)")
        found = from_folder(Path(run), list_records()) if Path(run).expanduser().exists() else from_run(
            load_record(run))
        result = push_override(found, override_gate, registry_root or found.registry_root or _root(None), model_name)
    except (OverrideError, FileNotFoundError) as err:
        typer.echo(f"dermpipe models push: {err}", err=True)
        raise typer.Exit(2) from err
    override = result["gate_override"]
    typer.echo(f"{model_name}: {result['message']}\ngate override by {override['user']} at {override['at']}: "
               f"{override['reason']}\nfailed gate rules: " + "; ".join(override["failed_rules"]))
    if not result["promoted"] and result["action"] != "unchanged":
        raise typer.Exit(1)


def _move(change, done: str, model_name: str, registry_root: str | None, apply_kserve: bool,
          kserve_manifest: str | None) -> None:
    """Move current.json with `change(root)`, say so, and have KServe follow; exit 2 on a registry error."""
    from dermpipe.deploy import registry

    root = _root(registry_root)
    try:
        record = change(root)
    except registry.RegistryError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(2) from err
    typer.echo(f"{model_name}: {done} {record['version']} (was {record['previous']})")
    _follow_on_kserve(root, model_name, int(record["version"]), apply_kserve, kserve_manifest)


def _follow_on_kserve(root: str, model_name: str, version: int, apply: bool, manifest_out: str | None,
                      api=None) -> None:
    """KServe serves what current.json says only if its InferenceService is re-pointed: do it (or render it)."""
    import yaml

    from dermpipe.deploy import cloud_targets
    settings = cloud_targets.kserve_settings(root, model_name)
    if settings is None:
        if manifest_out:
            settings = {"namespace": "default"}
        else:
            return  # never deployed to KServe: nothing there to move
    try:
        served = cloud_targets.serve_on_kserve(root, model_name, version, settings, api=api, apply=apply)
    except Exception as err:  # noqa: BLE001 - the registry moved; say plainly that the cluster did not
        typer.echo(f"{model_name}: the registry now serves version {version}, but re-pointing the KServe "
                   f"InferenceService failed ({type(err).__name__}: {err}); re-run with --kserve-manifest FILE and "
                   f"`kubectl apply -f FILE`", err=True)
        raise typer.Exit(1) from err
    if manifest_out:
        Path(manifest_out).write_text(yaml.safe_dump(served["manifest"], sort_keys=False))
    typer.echo(f"kserve: {served['kserve_inference_service']} {served['kserve_action']}, storageUri "
               f"{served['kserve_storage_uri']}" + (f" (manifest: {manifest_out})" if manifest_out else ""))


# `dermpipe serve`'s options from the Settings fields with help (bytes shown as MiB); tests/architecture checks them
SERVE_OPTIONS = option_specs(Settings, {"max_body_bytes": Scaled("max_body_mb", MIB),
                                        "grpc_max_message_bytes": Scaled("grpc_max_message_mb", MIB)})


@with_options(SERVE_OPTIONS)
def serve(
    registry_root: str = typer.Option(None, "--registry-root", help=REGISTRY_HELP),
    host: str = typer.Option("127.0.0.1", help="interface to listen on (0.0.0.0 in a container)"),
    port: int = typer.Option(8501, help="port (8501 is TF Serving's REST port)"),
    log_root: str = typer.Option(None, help="prediction log root, folder or gs:// [default: $DERMPIPE_HOME/"
                                            "predictions]; 'none' turns the log off"),
    log_level: str = typer.Option("info", help="debug | info | warning | error"),
    **options: Any,
) -> None:
    """Serve the current registry version: TF Serving REST API, Open Inference Protocol (v2), /predict, probes,
    /metrics over HTTP; with --grpc-port, TF Serving's gRPC API too.

    Feedback needs a bearer token once tokens are given (--auth-token-file, re-read when it changes, or
    $DERMPIPE_SERVE_TOKENS); without tokens it is taken on loopback only. --auth-predict guards predictions too;
    --tls-cert/--tls-key serve HTTPS and gRPC over TLS."""
    from dermpipe.serving.app import serve as run_server
    from dermpipe.serving.auth import SecuritySettingsError

    if log_root is None:
        log_root = str(config.home() / "predictions")
    settings = Settings(registry_root=_root(registry_root), log_root=None if log_root.lower() == "none" else log_root,
                        **field_values(SERVE_OPTIONS, options))
    try:
        run_server(settings, host=host, port=port, log_level=log_level)
    except SecuritySettingsError as err:  # tokens or TLS files that cannot be used: nothing started
        typer.echo(f"dermpipe serve: {err}", err=True)
        raise typer.Exit(2) from err
