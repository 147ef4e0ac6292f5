"""champion: resolve the model the registry serves now, as *parameters* for the tasks that depend on it.

TFX's resolver pattern. Evaluate compares the challenger with this champion and deploy promotes only if it is still
current, so the champion must be part of their cache keys. KFP caches on parameter values (and on artifact
identity), so the version and model digest travel as plain outputs: an unchanged champion still gives cache hits
downstream, a changed one re-runs evaluate. This task reads external state, so the pipeline never caches it.
It also pins the frozen benchmark set `benchmark_set` names (a bare name means "its latest version": registry
state too) to one file and name@vN, which split, gate and deploy take as parameter values.
"""

from typing import NamedTuple

from dermpipe.componentkit import stage_component


@stage_component()
def resolve_champion(registry_root: str = "", model_name: str = "dermpipe-isic2019",
                     benchmark_set: str = "") -> NamedTuple(
        "Champion", [("version", int), ("digest", str), ("benchmark_uri", str), ("benchmark", str)]):
    """The current version of `model_name` and its model digest (0 and '' when none is served yet), and the frozen
    benchmark set `benchmark_set` names now (its file and name@vN; '' when none)."""
    from collections import namedtuple

    from dermpipe.data.benchmark import pin
    from dermpipe.deploy.params import ChampionParams
    from dermpipe.deploy.registry import champion

    params = ChampionParams(registry_root=registry_root, model_name=model_name, benchmark_set=benchmark_set)
    found = champion(params.registry_root, params.model_name) if params.registry_root.strip() else None
    version, digest = (found.version, found.digest) if found else (0, "")
    uri, ref = pin(params.benchmark_set, params.registry_root, params.model_name)
    print(f"champion: {params.model_name} version {version or 'none'} (digest {digest[:12] or '-'}) in "
          f"{params.registry_root}; benchmark {ref or 'none (the whole test split)'}")
    return namedtuple("Champion", ["version", "digest", "benchmark_uri", "benchmark"])(version, digest, uri, ref)
