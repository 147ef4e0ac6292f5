"""The one registry of ingest source kinds: every kind a sources/ module declares is listed once, and a kind that
only its own module and the registry list know about is parsed, pre-flighted, ingested and fingerprinted."""

import ast
import importlib
import pkgutil
import shutil
from pathlib import Path

import pytest

import dermpipe.data.sources as sources_package
from dermpipe.data.ingest import IngestParams, ingest_source
from dermpipe.data.sources import registry
from dermpipe.data.sources.errors import IngestError
from dermpipe.data.sources.kind import Fetched, FetchRequest, SourceKind, prefixed
from dermpipe.data.sources.spec import check_source, parse_source
from dermpipe.orchestration.caching import remote_fingerprint
from dermpipe.pipelines.local import source_fingerprint

ROOT = Path(__file__).resolve().parents[2]
FORMER_IF_CHAINS = ("dermpipe/data/ingest.py", "dermpipe/data/sources/spec.py", "pipelines/local.py",
                    "dermpipe/orchestration/caching.py")


def declared_kinds() -> list[tuple[str, SourceKind]]:
    """(module.attribute, kind) for every SourceKind a module of dermpipe.data.sources declares (its fetch is that
    module's own; another module's kind it merely imports does not count)."""
    found = []
    for info in pkgutil.iter_modules(sources_package.__path__):
        module = importlib.import_module(f"dermpipe.data.sources.{info.name}")
        found += [(f"{info.name}.{name}", value) for name, value in vars(module).items()
                  if isinstance(value, SourceKind) and value.fetch.__module__ == module.__name__]
    return found


def test_every_declared_kind_is_registered_once_under_its_own_name():
    declared = declared_kinds()
    assert sorted(where for where, _ in declared) == ["demo.KIND", "gcs.KIND", "isic.KIND", "kaggle.KIND",
                                                      "local.FOLDER", "local.ZIP"]
    for where, kind in declared:
        assert sum(listed is kind for listed in registry.KINDS) == 1, f"{where} is not listed once in KINDS"
    assert len(registry.KINDS) == len(declared)  # nothing listed that no module declares
    names = [kind.name for kind in registry.KINDS]
    assert sorted(names) == ["demo", "gs", "isic", "kaggle", "local", "zip"] and len(set(names)) == len(names)
    assert registry.named("gs") is registry.KINDS[names.index("gs")]
    with pytest.raises(KeyError, match="no source kind 'ftp'; the kinds are demo, local, zip, kaggle, isic, gs"):
        registry.named("ftp")


def test_no_former_if_chain_tests_a_kind_itself():
    """The places that used to test prefixes and kind names ask the registry: no kind name or prefix is compared
    with, or passed to startswith, there."""
    written = {kind.name for kind in registry.KINDS} | {"gs://", "kaggle:", "isic:", "demo"}
    for path in FORMER_IF_CHAINS:
        for node in ast.walk(ast.parse((ROOT / path).read_text())):
            if isinstance(node, ast.Compare):
                operands = [node.left, *node.comparators]
            elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "startswith":
                operands = list(node.args)
            else:
                continue
            constants = {c.value for o in operands for c in ast.walk(o) if isinstance(c, ast.Constant)}
            assert not constants & written, f"{path}:{node.lineno} tests a source kind itself"


def check_mirror(location: str, *, local: bool) -> None:
    if not Path(location).is_dir():
        raise ValueError(f"mirror:{location}: no such folder; expected mirror:<a folder in the Kaggle layout>")


def fetch_mirror(location: str, request: FetchRequest) -> Fetched:
    copied = shutil.copytree(location, request.scratch)
    return Fetched(copied, {"download_files": sum(1 for p in copied.rglob("*") if p.is_file())}, scratch=True)


MIRROR = SourceKind(name="mirror", form="'mirror:<folder>'", claim=prefixed("mirror:"), fetch=fetch_mirror,
                    check=check_mirror, fingerprint=lambda location: f"{len(list(Path(location).rglob('*')))}")


@pytest.fixture
def mirror_registered(monkeypatch):
    """The new kind as its author adds it: declared in its own module, named in the registry list; nothing else."""
    monkeypatch.setattr(registry, "KINDS", (*registry.KINDS, MIRROR))


def test_a_new_kind_needs_only_its_module_and_the_registry_list(mirror_registered, isic_sample, tmp_path):
    source = f"mirror:{isic_sample}"
    assert parse_source(source) == parse_source(f"  {source} ")
    assert (parse_source(source).kind, parse_source(source).location) == ("mirror", str(isic_sample))
    with pytest.raises(IngestError, match=r"it does not exist; expected .* 'gs://bucket/prefix' or 'mirror:<folder>'"):
        parse_source(str(tmp_path / "missing"))
    for local in (True, False):  # not a path on this machine: a cluster run checks it here too
        with pytest.raises(IngestError, match="mirror:/nowhere: no such folder; expected mirror:<a folder"):
            check_source("mirror:/nowhere", local=local)
    IngestParams(source=source).check()

    summary = ingest_source(source, tmp_path / "raw")
    assert (summary["source_kind"], summary["n_images"], summary["download_files"]) == ("mirror", 475, 477)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]  # the scratch copy is gone

    key = source_fingerprint(source, 400)
    assert remote_fingerprint(source) == MIRROR.fingerprint(str(isic_sample))
    assert source_fingerprint(source, 400) == key != source_fingerprint("mirror:/elsewhere", 400)


def test_a_kind_without_fingerprint_is_keyed_by_its_string_and_a_cluster_path_is_not_read_here(tmp_path):
    assert remote_fingerprint("kaggle:andrewmvd/isic-2019") is None
    assert remote_fingerprint(str(tmp_path)) is None  # a folder: the cluster's disks, not this machine's
    assert source_fingerprint("kaggle:a/b", 400) != source_fingerprint("kaggle:a/c", 400)
    before = source_fingerprint(str(tmp_path), 400)
    (tmp_path / "ISIC_2019_Training_GroundTruth.csv").write_text("image,MEL\n")
    assert source_fingerprint(str(tmp_path), 400) != before
