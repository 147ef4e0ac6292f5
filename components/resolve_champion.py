"""resolve_champion: resolve the model the registry serves now, as *parameters* for the tasks that depend on it.

TFX's resolver pattern. Evaluate compares the challenger with this champion and deploy promotes only if it is still
current, so the champion must be part of their cache keys. KFP caches on parameter values (and on artifact
identity), so the version and model digest travel as plain outputs: an unchanged champion still gives cache hits
downstream, a changed one re-runs evaluate. This task reads external state, so the pipeline never caches it.
It also pins a frozen benchmark set to name@vN, which gate and deploy take as parameter values: the one
`benchmark_set` names (a bare name means "its latest version": registry state too; its file goes to split, which puts
all its groups into test), else the champion's own (frozen when it was deployed; the gate finds its groups), so later
gates compare on the champion's evidence (dermpipe.deploy.evidence). The logic is dermpipe.deploy.resolve_champion.
"""

from typing import NamedTuple

from dermpipe.componentkit import stage_component


@stage_component()
def resolve_champion(registry_root: str = "", model_name: str = "dermpipe-isic2019",
                     benchmark_set: str = "") -> NamedTuple(
        "Champion", [("version", int), ("digest", str), ("benchmark_uri", str), ("benchmark", str)]):
    """The current version of `model_name` and its model digest (0 and '' when none is served yet), and the frozen
    benchmark set to compare on (name@vN; '' when none): the named one (with its file, for split), else the
    champion's own."""
    from collections import namedtuple

    from dermpipe.deploy.resolve_champion import ChampionParams, run

    found = run(ChampionParams(registry_root=registry_root, model_name=model_name, benchmark_set=benchmark_set))
    return namedtuple("Champion", ["version", "digest", "benchmark_uri", "benchmark"])(
        found.version, found.digest, found.benchmark_uri, found.benchmark)
