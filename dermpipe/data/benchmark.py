"""Frozen benchmark sets: a named, versioned list of test groups that champion and challenger are compared on.

A benchmark version is one immutable JSON file, by default in the registry beside the model's versions:
<registry_root>/<model_name>/benchmarks/<name>/v<N>.json (or any local or gs:// file). It lists the group keys of
dermpipe.data.stable_split (lesion:…, patient:…, sha256:…, image:…), the split seed and data set fingerprint it was
cut from, its class counts and when it was frozen. The split stage puts every benchmark group present in the data
into test, so neither a model trained on that data nor any later one has seen them; the gate compares on them.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from dermpipe import config, storage

if TYPE_CHECKING:  # resolve-champion's pre-flight calls check_benchmark_set: no pandas on the way
    import pandas as pd

BENCHMARKS = "benchmarks"
# A frozen benchmark set by name (its latest version) or name@vN; a .json URI otherwise.
BENCHMARK_REF = r"^(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*?)(@v(?P<version>\d+))?$"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_REF = re.compile(BENCHMARK_REF)


def check_benchmark_set(spec: str) -> None:
    """'' (none), NAME, NAME@vN or the URI of a benchmark .json file."""
    spec = spec.strip()
    if spec and not spec.endswith(".json") and not _REF.match(spec):
        raise ValueError(f"benchmark_set={spec!r}: expected NAME, NAME@vN or the URI of a benchmark .json file")


@dataclass(frozen=True)
class Benchmark:
    name: str
    version: int
    groups: list[str]
    split_seed: int = 42
    class_counts: dict[str, int] = field(default_factory=dict)
    rows: int = 0
    dataset_fingerprint: str = ""
    created_at: str = ""

    @property
    def ref(self) -> str:
        """name@vN: what the gate, its report and the registry record name it by."""
        return f"{self.name}@v{self.version}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)


def benchmark_dir(registry_root: str, model_name: str, name: str) -> str:
    return storage.join(storage.join(str(registry_root), model_name), BENCHMARKS, name)


def benchmark_file(registry_root: str, model_name: str, name: str, version: int) -> str:
    return storage.join(benchmark_dir(registry_root, model_name, name), f"v{version}.json")


def versions(registry_root: str, model_name: str, name: str) -> list[int]:
    """The frozen versions of benchmark `name`, ascending ([] when none)."""
    stems = [n.removeprefix("v").removesuffix(".json") for n in storage.list_names(
        benchmark_dir(registry_root, model_name, name)) if n.startswith("v") and n.endswith(".json")]
    return sorted(int(s) for s in stems if s.isdigit())


def load(uri: str) -> Benchmark:
    """The benchmark in a JSON file, with an error that names the file and what is wrong."""
    try:
        data = json.loads(storage.read_text(uri))
        return Benchmark(**{**data, "groups": [str(g) for g in data["groups"]]})
    except FileNotFoundError:
        raise FileNotFoundError(f"benchmark set {uri} does not exist; list the frozen versions under "
                                f"<registry_root>/<model_name>/{BENCHMARKS}/<name>/ or freeze one with "
                                f"`dermpipe benchmark freeze`") from None
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"benchmark set {uri} is not a dermpipe benchmark JSON (name, version, groups, ...): "
                         f"{err}") from None


def resolve(benchmark_set: str, registry_root: str, model_name: str = config.MODEL_NAME) -> str:
    """The file a `benchmark_set` parameter names: '' (none) -> ''; a path or gs:// URI ending in .json -> itself;
    NAME@vN -> that version in the registry; NAME -> its latest version in the registry."""
    check_benchmark_set(benchmark_set)
    spec = benchmark_set.strip()
    if not spec or spec.endswith(".json"):
        return spec
    match = _REF.match(spec)
    if not registry_root.strip():
        raise ValueError(f"benchmark_set={spec!r} names a benchmark in the registry, but registry_root is empty; "
                         f"set registry_root or give the benchmark's .json URI")
    name, version = match["name"], match["version"]
    if version is None:
        found = versions(registry_root, model_name, name)
        if not found:
            raise FileNotFoundError(f"benchmark {name!r} has no frozen version under "
                                    f"{benchmark_dir(registry_root, model_name, name)}; freeze one with "
                                    f"`dermpipe benchmark freeze`")
        version = found[-1]
    return benchmark_file(registry_root, model_name, name, int(version))


def pin(benchmark_set: str, registry_root: str, model_name: str = config.MODEL_NAME) -> tuple[str, str]:
    """(file URI, name@vN) of the benchmark `benchmark_set` names now, ('', '') for none: the resolver's outputs,
    so that split and gate see a fixed version as parameter values (a newly frozen version changes them)."""
    uri = resolve(benchmark_set, registry_root, model_name)
    return (uri, load(uri).ref) if uri else ("", "")


def from_test_split(test: pd.DataFrame, name: str, version: int, *, split_seed: int,
                    dataset_fingerprint: str = "") -> Benchmark:
    """A benchmark of the test split's groups (its `group_key` column, written by the split stage)."""
    if not _NAME.match(name):
        raise ValueError(f"benchmark name {name!r}: use letters, digits, '.', '_' and '-' (it is a folder name)")
    if "group_key" not in test:
        raise ValueError("the test split has no group_key column; re-run the split stage with this version of "
                         "dermpipe to get one")
    counts = test["label"].value_counts()
    return Benchmark(name=name, version=version, groups=sorted(set(test["group_key"].astype(str))),
                     split_seed=split_seed, class_counts={c: int(counts.get(c, 0)) for c in config.CLASSES},
                     rows=len(test), dataset_fingerprint=dataset_fingerprint,
                     created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))


def freeze(test: pd.DataFrame, name: str, registry_root: str, model_name: str = config.MODEL_NAME, *,
           split_seed: int, dataset_fingerprint: str = "") -> tuple[str, Benchmark]:
    """Write the test split's groups as the next version of benchmark `name`; (its URI, the benchmark). A version,
    once written, is never replaced: concurrent freezes each get their own number."""
    version = (versions(registry_root, model_name, name) or [0])[-1] + 1
    for _ in range(100):
        bench = from_test_split(test, name, version, split_seed=split_seed, dataset_fingerprint=dataset_fingerprint)
        uri = benchmark_file(registry_root, model_name, name, version)
        if storage.create_if_absent(uri, bench.to_json().encode()):
            return uri, bench
        version += 1
    raise RuntimeError(f"{benchmark_dir(registry_root, model_name, name)}: no free version number after 100 tries")


def set_name(source: str) -> str:
    """The name a deployment's own frozen set gets from its data source: `demo` -> demo-test, a folder or URI ->
    its last part (isic2019-sample-test), `kaggle:owner/name` -> kaggle-owner-name-test."""
    local_or_gcs = source.startswith("gs://") or ":" not in source
    tail = source.rstrip("/").rsplit("/", 1)[-1] if local_or_gcs else source
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", tail).strip("-._") or "data"
    return f"{slug}-test"


def freeze_or_reuse(test: pd.DataFrame, name: str, registry_root: str, model_name: str = config.MODEL_NAME, *,
                    split_seed: int, dataset_fingerprint: str = "") -> tuple[str, Benchmark, bool]:
    """(URI, benchmark, frozen now?): the latest version of `name` when it lists exactly this test split's groups
    (a retrain on the same data keeps the set, and with it the cache of the runs that pin it), else a new version."""
    found = versions(registry_root, model_name, name)
    if found:
        uri = benchmark_file(registry_root, model_name, name, found[-1])
        latest = load(uri)
        if set(latest.groups) == set(test["group_key"].astype(str)):
            return uri, latest, False
    uri, bench = freeze(test, name, registry_root, model_name, split_seed=split_seed,
                        dataset_fingerprint=dataset_fingerprint)
    return uri, bench, True
