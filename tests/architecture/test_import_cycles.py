"""No import cycle inside any folder of dermpipe (components/ and pipelines/ included), and the check really finds
one: a cycle planted in a copy of the tree is reported with its package and modules."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from import_cycles import KNOWN, find_cycles, strongly_connected  # noqa: E402 (tests/import_cycles.py)
from lint_layers import REPO, build_mirror  # noqa: E402


@pytest.fixture(scope="module")
def found(tmp_path_factory):
    return find_cycles(build_mirror(REPO, tmp_path_factory.mktemp("mirror")))


def test_no_folder_has_an_import_cycle(found):
    assert {p: c for p, c in found.items() if p not in KNOWN} == {}


def test_each_known_cycle_is_still_there(found):
    """A known cycle that is gone must leave KNOWN, so that it cannot come back unnoticed."""
    assert sorted(KNOWN) == sorted(p for p in found if p in KNOWN)


@pytest.mark.parametrize(("module", "planted", "package", "members"), [
    # data/split imports data/stable_split; stable_split importing split back closes a cycle in dermpipe.data
    ("dermpipe/data/stable_split.py", "import dermpipe.data.split", "dermpipe.data",
     ["dermpipe.data.split", "dermpipe.data.stable_split"]),
    # a lazy import counts: the profile's reference importing its features back (features imports reference)
    ("dermpipe/model/profile/reference.py", "def _planted():\n    from dermpipe.model.profile import features",
     "dermpipe.model.profile", ["dermpipe.model.profile.features", "dermpipe.model.profile.reference"]),
])
def test_a_planted_cycle_is_found(tmp_path, module, planted, package, members):
    mirror = build_mirror(REPO, tmp_path)
    target = mirror / module
    target.write_text(target.read_text() + f"\n\n{planted}  # planted by the test\n")
    assert members in find_cycles(mirror)[package]


def test_strongly_connected_reports_each_cycle_once():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"f"}, "f": {"e"}}
    assert sorted(strongly_connected(edges)) == [["a", "b", "c"], ["e", "f"]]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []
