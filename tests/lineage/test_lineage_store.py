"""Lineage store, lineage trees and the UI's pure helpers on a small hand-made graph (no pipeline run)."""

import json
import sqlite3
from pathlib import Path

import pytest

from dermpipe.lineage import store as ls
from dermpipe.lineage.tree import LineageError, lineage, render_lineage
from dermpipe.lineage.ui.display import confusion_table, diff_params
from dermpipe.lineage.ui.files import UnsafePath, safe_path
from dermpipe.lineage.ui.graph import GraphNode, dag_svg, levels


def art(uri: Path | str, kind: str = "system.Dataset", **meta) -> dict:
    return {"type": kind, "uri": str(uri), "metadata": meta}


@pytest.fixture()
def store(tmp_path) -> ls.Store:
    """Two runs: r1 ingests and trains; r2 reuses r1's ingest output from the cache and trains again, then deploys."""
    db = tmp_path / "lineage.sqlite"
    data = tmp_path / "r1" / "ingest" / "dataset"
    data.mkdir(parents=True)
    (data / "a.jpg").write_bytes(b"jpeg-a")
    model1, model2 = tmp_path / "r1" / "train" / "model", tmp_path / "r2" / "train" / "model"
    for model in (model1, model2):
        model.parent.mkdir(parents=True, exist_ok=True)
        model.write_bytes(str(model).encode())
    pushed = tmp_path / "r2" / "deploy" / "pushed"
    pushed.parent.mkdir(parents=True)
    pushed.write_text("{}")

    ls.record_run("tmp-run", pipeline="p", status="running", started="2026-01-01T00:00:00", params={"a": 1},
                  pipeline_root=str(tmp_path), path=db)
    ls.rename_run("tmp-run", "r1", path=db)
    t = ls.start_task("r1", "ingest", "2026-01-01T00:00:01", {"source": "demo"}, {}, path=db)
    ls.finish_task(t, status="success", finished="x", seconds=1.5, cached=False, error="",
                   outputs={"dataset": art(data, n_images=1, code_version="0.1.0+abc")}, path=db)
    t = ls.start_task("r1", "train", "2026-01-01T00:00:02", {"epochs": 3.0}, {"raw": art(data)}, path=db)
    ls.finish_task(t, status="success", finished="x", seconds=9.0, cached=False, error="",
                   outputs={"model": art(model1, "system.Model", epochs_run=3)}, path=db)
    ls.record_run("r1", pipeline="p", status="succeeded", started="2026-01-01T00:00:00", params={"a": 1},
                  pipeline_root=str(tmp_path), finished="2026-01-01T00:01:00", path=db)

    ls.record_run("r2", pipeline="p", status="running", started="2026-01-02T00:00:00", params={"a": 2},
                  pipeline_root=str(tmp_path), code={"code_version": "0.1.0+abc", "git_commit": "0123456789abcdef",
                                                     "git_dirty": True}, path=db)
    t = ls.start_task("r2", "ingest", "2026-01-02T00:00:01", {"source": "demo"}, {}, path=db)
    ls.finish_task(t, status="success", finished="x", seconds=0.0, cached=True, error="",
                   outputs={"dataset": art(data, n_images=1, code_version="0.1.0+abc")}, path=db)
    t = ls.start_task("r2", "train", "2026-01-02T00:00:02", {"epochs": 5}, {"raw": art(data)}, path=db)
    ls.finish_task(t, status="success", finished="x", seconds=12.0, cached=False, error="",
                   outputs={"model": art(model2, "system.Model", epochs_run=5)}, path=db)
    t = ls.start_task("r2", "deploy", "2026-01-02T00:00:03", {}, {"model": art(model2, "system.Model")}, path=db)
    ls.finish_task(t, status="success", finished="x", seconds=1.0, cached=False, error="",
                   outputs={"pushed": art(pushed, "system.Model", model_name="m", version=4.0,
                                          registry_uri="/reg/m/4")}, path=db)
    return ls.Store(db)


def test_store_keeps_runs_tasks_artifacts_and_edges(store, tmp_path):
    assert [r.run_id for r in store.runs()] == ["r2", "r1"]  # newest first; the renamed run kept its tasks
    r1 = store.run("r1")
    assert r1.status == "succeeded" and r1.params == {"a": 1} and r1.finished.endswith("01:00")
    assert [(t.name, t.cached, t.seconds) for t in store.tasks("r2")] == [("ingest", True, 0.0),
                                                                           ("train", False, 12.0),
                                                                           ("deploy", False, 1.0)]
    dataset = store.artifact_by_uri(str(tmp_path / "r1/ingest/dataset"))
    assert dataset.metadata == {"n_images": 1, "code_version": "0.1.0+abc"}
    # the cached task in r2 shares r1's artifact; the writer comes first
    assert [(t.run_id, t.cached) for t in store.producers(dataset.id)] == [("r1", False), ("r2", True)]
    assert [(t.run_id, t.name) for t in store.consumers(dataset.id)] == [("r1", "train"), ("r2", "train")]
    assert store.task_edges("r2") == [("ingest", "train"), ("train", "deploy")]
    assert store.model_versions() == [("m", 4, "/reg/m/4")]


def test_content_hash_prefers_declared_hash_then_file_then_folder(tmp_path):
    declared = "ab" * 32
    assert ls.content_hash(str(tmp_path / "missing"), {"manifest_sha256": declared}) == declared
    assert ls.content_hash(str(tmp_path / "missing"), {}) == ""
    (tmp_path / "f").write_bytes(b"abc")
    assert ls.content_hash(str(tmp_path / "f"), {}) == \
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # sha256("abc")
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "x").write_bytes(b"1")
    first = ls.content_hash(str(folder), {})
    (folder / "x").rename(folder / "y")  # same bytes, another name: another folder hash
    assert len(first) == 64 and ls.content_hash(str(folder), {}) != first


def test_model_reference_walks_up_to_the_data_and_its_producer(store):
    answer = lineage(store, "model:m/4")
    up = answer["upstream"]
    assert up["name"] == "pushed" and up["summary"]["version"] == 4.0
    deploy = up["children"][0]
    assert (deploy["role"], deploy["name"], deploy["run_id"]) == ("produced by", "deploy", "r2")
    train = deploy["children"][0]["children"][0]
    assert (train["name"], train["params"]) == ("train", {"epochs": 5})
    ingest = train["children"][0]["children"][0]
    assert (ingest["name"], ingest["run_id"], ingest["reused_by_runs"]) == ("ingest", "r1", ["r2"])
    assert ingest["code_version"] == "0.1.0+abc"
    text = render_lineage(answer)
    assert "└── produced by: task deploy [success, 1.0s] run r2 code 0.1.0+abc git 0123456789\n" in text
    assert "params epochs=5" in text and "source=demo" in text
    assert "reused from the cache by 1 later run(s)" in text


def test_dataset_downstream_lists_every_consuming_run(store, tmp_path):
    answer = lineage(store, str(tmp_path / "r1/ingest/dataset"))
    assert answer["read_by_runs"] == ["r1", "r2"]
    consumers = answer["downstream"]["children"]
    assert [(t["run_id"], t["name"]) for t in consumers] == [("r1", "train"), ("r2", "train")]
    assert consumers[1]["children"][0]["children"][0]["name"] == "deploy"  # r2's model went on to deploy
    assert "downstream: what used it (read by 2 run(s): r1, r2)" in render_lineage(answer)
    assert json.loads(json.dumps(answer))["kind"] == "artifact"


def test_run_reference_lists_tasks_and_where_cached_outputs_came_from(store):
    answer = lineage(store, "r2")
    run = answer["run"]
    assert [t["name"] for t in run["children"]] == ["ingest", "train", "deploy"]
    dataset = run["children"][0]["children"][0]
    assert dataset["role"] == "output dataset" and dataset["from_run"] == "r1/ingest"
    text = render_lineage(answer)
    assert text.startswith("run r2 [running]  code 0.1.0+abc git 0123456789 (uncommitted changes)\n")
    assert "(written by r1/ingest)" in text and run["code"]["git_dirty"] is True


def test_unknown_references_say_what_is_known(store, tmp_path):
    with pytest.raises(LineageError, match=r"no deployed version 'model:m/9'.*known: model:m/4"):
        lineage(store, "model:m/9")
    with pytest.raises(LineageError, match="neither a run id, an artifact URI.*Recent runs: r2, r1"):
        lineage(store, "nothing")
    with pytest.raises(LineageError, match="no lineage store"):
        lineage(ls.Store(tmp_path / "absent.sqlite"), "r1")


def test_edges_refuse_an_unknown_direction(store):
    with ls.connect(store.path) as conn, pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO edges VALUES (1, 1, 'sideways', 'x')")


def test_safe_path_refuses_to_leave_the_artifact(tmp_path):
    root = tmp_path / "artifact"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "f.png").write_bytes(b"png")
    (tmp_path / "secret").write_text("no")
    (root / "link").symlink_to(tmp_path / "secret")
    assert safe_path(root, "sub/f.png") == (root / "sub" / "f.png").resolve()
    assert safe_path(root, "") == root.resolve()
    for bad in ("../secret", "sub/../../secret", str(tmp_path / "secret"), "link"):
        with pytest.raises(UnsafePath, match="outside the artifact folder"):
            safe_path(root, bad)


def test_levels_and_svg_lay_a_dag_out_left_to_right():
    edges = [("a", "b"), ("b", "c"), ("a", "c"), ("b", "d")]
    assert levels(["a", "b", "c", "d"], edges) == {"a": 0, "b": 1, "c": 2, "d": 2}
    nodes = [GraphNode(n, f"task {n}", "1.0s", "cached" if n == "d" else "ok", f"#{n}") for n in "abcd"]
    svg = dag_svg(nodes, edges, width=100, height=40, gap_x=50, gap_y=10)
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count("<rect") == 4 and svg.count('class="edge"') == 4
    assert 'width="420" height="110"' in svg  # 3 layers of 100 + 2 gaps of 50 + margins; 2 rows of 40 + gap
    assert 'class="node cached" data-node="d"' in svg and '<a href="#a">' in svg
    assert "<script" not in dag_svg([GraphNode("x", "<script>alert(1)</script>")], [])


def test_confusion_table_and_parameter_diff():
    meta = {"confusionMatrix": {"annotationSpecs": [{"displayName": "MEL"}, {"displayName": "NV"}],
                                "rows": [{"row": [3.0, 1.0]}, {"row": [0.0, 5.0]}]}}
    assert confusion_table(meta) == {"labels": ["MEL", "NV"], "rows": [[3, 1], [0, 5]], "max": 5}
    assert confusion_table({}) is None
    assert diff_params({"a": 1, "b": 2}, {"b": 3, "c": 4}) == [("a", 1, "", True), ("b", 2, 3, True),
                                                                 ("c", "", 4, True)]
    assert diff_params({"a": 1}, {"a": 1}) == [("a", 1, 1, False)]


def test_a_lineage_store_failure_is_reported_but_does_not_fail_the_run(capsys, dermpipe_home):
    from dermpipe.pipelines.local import _task_inputs, _to_lineage

    def locked(*args, **kwargs):
        raise sqlite3.OperationalError("database is locked")

    assert _to_lineage(locked, "r1") is None
    err = capsys.readouterr().err
    assert f"could not write lineage to {dermpipe_home / 'lineage.sqlite'} (locked)" in err
    assert "OperationalError: database is locked; the run goes on" in err
    assert _task_inputs(None, None) == ({}, {})


def test_ui_on_a_running_run_reloads_and_names_what_is_missing(store):
    from fastapi.testclient import TestClient

    from dermpipe.lineage.ui.app import create_app

    client = TestClient(create_app(store))
    page = client.get("/runs/r2")
    assert page.status_code == 200 and '<meta http-equiv="refresh" content="5">' in page.text
    assert '<p id="code">code 0.1.0+abc git 0123456789 (uncommitted changes)</p>' in page.text
    assert page.text.count('<g class="node ') == 3 and '<g class="node cached" data-node="t3"' in page.text
    assert 'http-equiv="refresh"' not in client.get("/runs/r1").text
    missing = client.get("/runs/r9")
    assert missing.status_code == 404 and "no run 'r9' in the lineage store" in missing.json()["detail"]
    assert "no artifact 99" in client.get("/artifacts/99").json()["detail"]
    runs = client.get("/").text
    assert runs.index('href="/runs/r2"') < runs.index('href="/runs/r1"') and "1 cached" in runs


def test_ui_lineage_page_of_a_run_draws_its_tasks(store):
    from fastapi.testclient import TestClient

    from dermpipe.lineage.ui.app import create_app

    page = TestClient(create_app(store)).get("/lineage", params={"ref": "r2"}).text
    assert page.count('<g class="node ') == 3 and page.count('class="edge"') == 2
    assert "(written by r1/ingest)" in page


def test_ui_draws_a_failed_task_red_with_its_error(tmp_path):
    from fastapi.testclient import TestClient

    from dermpipe.lineage.ui.app import create_app

    db = tmp_path / "lineage.sqlite"
    ls.record_run("bad", pipeline="p", status="failed", started="2026-01-03T00:00:00", params={}, pipeline_root="",
                  error="task merge: SchemaError: x.csv: missing column(s) ['NV']", path=db)
    task = ls.start_task("bad", "merge", "2026-01-03T00:00:01", {}, {}, path=db)
    ls.finish_task(task, status="failure", finished="x", seconds=0.4, cached=False,
                   error="SchemaError: x.csv: missing column(s) ['NV']", outputs={}, path=db)
    page = TestClient(create_app(ls.Store(db))).get("/runs/bad").text
    assert '<g class="node bad" data-node="t1"' in page and "failure · 0.4s" in page
    assert "error: task merge: SchemaError: x.csv: missing column(s) [&#39;NV&#39;]" in page


def test_a_store_without_the_code_column_is_migrated(tmp_path):
    db = tmp_path / "old.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE runs (run_id TEXT PRIMARY KEY, pipeline TEXT, status TEXT, started TEXT, "
                     "finished TEXT DEFAULT '', params TEXT DEFAULT '{}', pipeline_root TEXT DEFAULT '', "
                     "error TEXT DEFAULT '')")
        conn.execute("INSERT INTO runs (run_id, status, started) VALUES ('old', 'succeeded', '2025')")
    assert ls.Store(db).run("old").code == {}
    ls.record_run("new", pipeline="p", status="running", started="2026", params={}, pipeline_root="",
                  code={"git_commit": "abc"}, path=db)
    assert ls.Store(db).run("new").code == {"git_commit": "abc"}
