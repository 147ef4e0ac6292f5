"""`dermpipe benchmark`: freeze a run's test groups as a new version of a named benchmark set, list the versions."""

from __future__ import annotations

import typer

from dermpipe import config

benchmark_app = typer.Typer(help="Frozen benchmark sets: the named, versioned test groups the gate compares "
                                 "champion and challenger on (pipeline parameter benchmark_set).",
                            no_args_is_help=True)
REGISTRY_HELP = "model registry: folder or gs://bucket/prefix [default: $DERMPIPE_HOME/registry]"


def _test_split(run_id: str | None, test_split: str | None) -> tuple[str, int | None, str]:
    """(test split URI, its split seed or None when unknown, data set fingerprint) from a local run or a URI."""
    if bool(run_id) == bool(test_split):
        raise typer.BadParameter("give exactly one of --run RUN_ID (a local run) or --test-split URI (test.parquet)")
    if test_split:
        return test_split, None, ""
    from dermpipe.pipelines.local import load_record

    record = load_record(run_id)
    test = record.artifact("split", "test")
    if not test:
        raise typer.BadParameter(f"run {run_id} has no split stage output `test`; did the run get that far?")
    ingested = (record.artifact("ingest", "dataset") or {}).get("metadata", {})
    seed = (test.get("metadata", {}).get("params") or {}).get("seed")
    return str(test["uri"]), seed, str(ingested.get("manifest_sha256", ""))


@benchmark_app.command()
def freeze(
    name: str = typer.Argument(..., help="the benchmark set's name (letters, digits, '.', '_', '-')"),
    run: str = typer.Option(None, "--run", help="local run whose test split to freeze (`dermpipe runs`)"),
    test_split: str = typer.Option(None, "--test-split", help="or: a split stage's test.parquet (local or gs://)"),
    split_seed: int = typer.Option(None, "--split-seed", help="the split seed it was cut with [default: the run's]"),
    model_name: str = typer.Option(config.MODEL_NAME, "--model-name", help="model in the registry"),
    registry_root: str = typer.Option(None, "--registry-root", help=REGISTRY_HELP),
) -> None:
    """Freeze the test split's groups as the next version of benchmark NAME in the registry."""
    import tempfile
    from pathlib import Path

    import pandas as pd

    from dermpipe import storage
    from dermpipe.data.benchmark import freeze as freeze_set

    uri, seed, fingerprint = _test_split(run, test_split)
    with tempfile.TemporaryDirectory() as tmp:
        table = pd.read_parquet(storage.download(uri, Path(tmp) / "test.parquet"))
    root = registry_root or str(config.default_registry_root())
    written, bench = freeze_set(table, name, root, model_name, dataset_fingerprint=fingerprint,
                                split_seed=split_seed if split_seed is not None else int(seed or 0))
    typer.echo(f"froze {bench.ref}: {len(bench.groups)} groups, {bench.rows} images "
               f"({', '.join(f'{c} {n}' for c, n in bench.class_counts.items())}) -> {written}\n"
               f"use it with --benchmark-set {bench.name} (latest version) or --benchmark-set {bench.ref}")


@benchmark_app.command("list")
def list_sets(
    name: str = typer.Argument(..., help="the benchmark set's name"),
    model_name: str = typer.Option(config.MODEL_NAME, "--model-name", help="model in the registry"),
    registry_root: str = typer.Option(None, "--registry-root", help=REGISTRY_HELP),
) -> None:
    """The frozen versions of benchmark NAME: groups, images, seed, when."""
    from dermpipe.data.benchmark import benchmark_file, load, versions

    root = registry_root or str(config.default_registry_root())
    found = versions(root, model_name, name)
    if not found:
        typer.echo(f"no frozen version of benchmark {name!r} under {root}/{model_name}; create one with "
                   f"`dermpipe benchmark freeze {name} --run RUN_ID`")
        raise typer.Exit(1)
    for version in found:
        bench = load(benchmark_file(root, model_name, name, version))
        typer.echo(f"{bench.ref}  {len(bench.groups)} groups  {bench.rows} images  split_seed {bench.split_seed}  "
                   f"{bench.created_at}")
