"""The resolve-champion stage: the model the registry serves now and the frozen benchmark set to compare on, as
*values* for the tasks that depend on them (TFX's resolver pattern; components/resolve_champion.py says why values).

Light to import (the registry and benchmark code is imported when the stage runs): `dermpipe run`'s options and
pre-flight are built from ChampionParams.
"""

from __future__ import annotations

from dataclasses import dataclass

from dermpipe.componentkit import param
from dermpipe.deploy.registry import model_name_field, registry_root_field


@dataclass(frozen=True)
class ChampionParams:
    registry_root: str = registry_root_field()
    model_name: str = model_name_field()
    benchmark_set: str = param("", "frozen benchmark set the gate compares on: NAME (its latest version in the "
                                   "registry), NAME@vN, or a benchmark .json URI; empty: the champion's own "
                                   "(frozen when it was deployed)")

    def check(self) -> None:
        from dermpipe.data.benchmark import check_benchmark_set

        check_benchmark_set(self.benchmark_set)


@dataclass(frozen=True)
class Resolved:
    """resolve-champion's outputs: `benchmark_uri` goes to split (a named set only), `benchmark` to gate and deploy."""

    version: int
    digest: str
    benchmark_uri: str
    benchmark: str


def resolve(registry_root: str, model_name: str, benchmark_set: str) -> Resolved:
    """The current champion (version, digest) and the benchmark set to compare on: the named one when
    `benchmark_set` is set (split then puts all its groups into test), else the champion's own frozen set (none
    without a champion). The own set is not handed to split: it is the test split of the champion's run, which a
    hash split with the same seed keeps in test anyway, and a new split parameter after every deployment would
    re-run split and retrain even an unchanged run; the gate finds the set's groups itself and leaves out any the
    challenger trained on (dermpipe.deploy.gate.challenge)."""
    from dermpipe.data.benchmark import pin
    from dermpipe.deploy.evidence import champion_set
    from dermpipe.deploy.registry import champion

    found = champion(registry_root, model_name) if registry_root.strip() else None
    version, digest = (found.version, found.digest) if found else (0, "")
    if benchmark_set.strip():
        uri, ref = pin(benchmark_set, registry_root, model_name)
        return Resolved(version, digest, uri, ref)
    _, ref = champion_set(registry_root, model_name, version)
    return Resolved(version, digest, "", ref)


def run(params: ChampionParams) -> Resolved:
    """Resolve the champion and its benchmark set, and say which in the task's log."""
    found = resolve(params.registry_root, params.model_name, params.benchmark_set)
    origin = "named" if params.benchmark_set.strip() else f"version {found.version}'s own frozen set"
    print(f"champion: {params.model_name} version {found.version or 'none'} (digest {found.digest[:12] or '-'}) in "
          f"{params.registry_root}; benchmark {found.benchmark + ' (' + origin + ')' if found.benchmark else 'none'}")
    return found
