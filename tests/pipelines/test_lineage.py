"""Lineage store, `dermpipe lineage` and the UI pages on the session's real kfp.local demo runs."""

import json
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from dermpipe.cli.main import app
from dermpipe.config import CLASSES
from dermpipe.lineage.store import Store
from dermpipe.lineage.ui.app import create_app

pytestmark = pytest.mark.slow  # shares the session's two kfp.local runs with test_local_run.py

MODEL = "model:dermpipe-isic2019/1"


@pytest.fixture(scope="module")
def store(first_run, cached_run, home) -> Store:
    assert first_run.status == cached_run.status == "succeeded", first_run.error or cached_run.error
    return Store(home / "lineage.sqlite")


@pytest.fixture(scope="module")
def client(store) -> TestClient:
    return TestClient(create_app(store))


def test_store_mirrors_the_run_records(store, first_run, cached_run):
    for record in (first_run, cached_run):
        run = store.run(record.run_id)
        assert (run.status, run.params["demo_images"], run.finished) == ("succeeded", 240, record.finished)
        tasks = {t.name: t for t in store.tasks(record.run_id)}
        assert set(tasks) == set(record.tasks)
        for name, task in tasks.items():
            assert (task.status, task.cached, task.seconds) == ("success", record.tasks[name].cached,
                                                               record.tasks[name].seconds)
            outputs = {n: a.uri for n, a in store.io(task.id, "output")}
            assert outputs == {n: o["uri"] for n, o in record.tasks[name].outputs.items() if isinstance(o, dict)}
    by_name = {run.run_id: {t.name: t for t in store.tasks(run.run_id)} for run in (first_run, cached_run)}
    assert by_name[cached_run.run_id]["ingest"].cached and not by_name[first_run.run_id]["ingest"].cached
    edges = set(store.task_edges(first_run.run_id))
    assert {("ingest", "merge"), ("merge", "split"), ("split", "train"), ("train", "evaluate"),
            ("evaluate", "explain"), ("train", "deploy"), ("evaluate", "deploy")} <= edges
    assert store.headline(first_run.run_id) == first_run.headline()


def test_runs_name_the_code_that_ran_them(store, first_run):
    code = store.run(first_run.run_id).code
    assert code["code_version"] == first_run.artifact("train", "model")["metadata"]["code_version"]
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / ".git").exists():
        head = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True)
        assert code["git_commit"] == head.stdout.strip() and len(code["git_commit"]) == 40


def test_artifacts_carry_hashes_and_task_parameters(store, first_run):
    dataset = store.artifact_by_uri(first_run.artifact("ingest", "dataset")["uri"])
    assert dataset.hash == first_run.artifact("ingest", "dataset")["metadata"]["manifest_sha256"]
    merged = store.artifact_by_uri(first_run.artifact("merge", "merged")["uri"])
    assert len(merged.hash) == 64 and merged.metadata["rows"] == 240
    split = {t.name: t for t in store.tasks(first_run.run_id)}["split"]
    assert split.params == {"test_size": 0.1, "val_size": 0.1, "seed": 42, "folds": 0, "method": "hash",
                            "benchmark_uri": "", "file": "", "file_sha256": ""}
    assert [n for n, _ in store.io(split.id, "input")] == ["merged"]


def test_deployed_version_resolves_to_data_split_parameters_and_code(store, first_run, cached_run):
    result = CliRunner().invoke(app, ["lineage", MODEL, "--json"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    deploy = answer["upstream"]["children"][0]
    assert (deploy["name"], deploy["run_id"], deploy["cached"]) == ("deploy", first_run.run_id, False)
    assert deploy["reused_by_runs"] == []  # deploy is never cached: the cached run's deploy pushed nothing

    found: dict[str, dict] = {}

    def walk(node):
        if node["kind"] == "task":
            found.setdefault(node["name"], node)
        for child in node["children"]:
            walk(child)

    walk(answer["upstream"])
    assert set(found) == {"deploy", "evaluate", "profile", "train", "prepare", "split", "merge", "ingest"}
    assert found["ingest"]["params"]["source"] == "demo" and found["ingest"]["params"]["demo_images"] == 240
    assert found["split"]["params"] == {"test_size": 0.1, "val_size": 0.1, "seed": 42, "folds": 0,
                                        "method": "hash", "benchmark_uri": "", "file": "", "file_sha256": ""}
    assert found["train"]["params"]["backbone"] == "simple_cnn" and found["train"]["params"]["epochs"] == 10
    code = first_run.artifact("train", "model")["metadata"]["code_version"]
    assert {node["code_version"] for node in found.values()} == {code}

    text = CliRunner().invoke(app, ["lineage", MODEL])
    assert text.exit_code == 0
    assert text.output.startswith("upstream: what produced it\nartifact: pushed [system.Model]")
    assert f"produced by: task deploy [success, {first_run.tasks['deploy'].seconds:.1f}s] run {first_run.run_id}" \
        in text.output
    assert "input train_split: train [system.Dataset]" in text.output and "seed=42" in text.output


def test_dataset_lineage_names_every_run_that_read_it(store, first_run, cached_run):
    uri = first_run.artifact("ingest", "dataset")["uri"]
    result = CliRunner().invoke(app, ["lineage", uri, "--json"])
    answer = json.loads(result.output)
    assert answer["read_by_runs"] == sorted([first_run.run_id, cached_run.run_id])
    consumers = {(t["run_id"], t["name"], t["cached"]) for t in answer["downstream"]["children"]}
    assert (cached_run.run_id, "merge", True) in consumers and (first_run.run_id, "train", False) in consumers


def test_run_lineage_and_unknown_reference(store, cached_run, first_run):
    result = CliRunner().invoke(app, ["lineage", cached_run.run_id])
    assert result.exit_code == 0
    assert result.output.startswith(f"run {cached_run.run_id} [succeeded]")
    assert f"(written by {first_run.run_id}/train)" in result.output
    missing = CliRunner().invoke(app, ["lineage", "model:dermpipe-isic2019/7"])
    assert missing.exit_code == 2 and "known: model:dermpipe-isic2019/1" in missing.output


def test_runs_page_lists_runs_with_status_and_metrics(client, first_run, cached_run):
    page = client.get("/")
    assert page.status_code == 200
    for record in (first_run, cached_run):
        assert f'href="/runs/{record.run_id}"' in page.text
    assert f"{first_run.headline()['balanced_accuracy']:.4f}" in page.text
    # the cached twin: every stage; resolve-champion and deploy never come from the cache, and the gate re-ran
    # because the champion changed (none -> version 1)
    assert f"{len(first_run.tasks) - 3} cached" in page.text


def test_run_page_draws_the_dag_with_status_time_and_cache_hits(client, first_run, cached_run):
    page = client.get(f"/runs/{first_run.run_id}")
    assert page.status_code == 200
    tasks = len(first_run.tasks)
    assert page.text.count('<g class="node ok"') == tasks and page.text.count('class="edge"') >= tasks
    assert "train</text>" in page.text and f"success · {first_run.tasks['train'].seconds:.1f}s" in page.text
    assert all(title in page.text for title in ("Evaluation report", "Grad-CAM gallery", "Data report",
                                                 "Deployment decision"))
    assert 'http-equiv="refresh"' not in page.text  # only running runs reload themselves
    cached = client.get(f"/runs/{cached_run.run_id}")
    assert cached.text.count('<g class="node cached"') == tasks - 3 and "cache hit" in cached.text


def test_artifact_pages_render_report_confusion_matrix_and_gallery(client, store, first_run):
    report = store.artifact_by_uri(first_run.artifact("evaluate", "report")["uri"])
    page = client.get(f"/artifacts/{report.id}")
    assert "<h1>Evaluation report</h1>" in page.text and f'src="/files/{report.id}"' in page.text
    served = client.get(f"/files/{report.id}")
    assert served.status_code == 200 and served.headers["content-type"].startswith("text/html")
    assert "sandbox" in served.headers["content-security-policy"] and "Confusion matrix" in served.text

    confusion = store.artifact_by_uri(first_run.artifact("evaluate", "confusion")["uri"])
    page = client.get(f"/artifacts/{confusion.id}").text
    test_rows = len(pd.read_parquet(first_run.artifact("split", "test")["uri"]))
    table = page[page.index('<table class="cm"'):page.index("</table>", page.index('<table class="cm"'))]
    assert re.findall(r"<th>(\w+)</th>", table.split("</tr>")[0]) == list(CLASSES)
    cells = [int(v) for v in re.findall(r"<td[^>]*>(\d+)</td>", table)]
    assert len(cells) == 64 and sum(cells) == test_rows

    data_report = store.artifact_by_uri(first_run.artifact("merge", "report")["uri"])
    page = client.get(f"/artifacts/{data_report.id}").text
    assert "<h1>Data report</h1>" in page and '<pre id="text">' in page
    assert Path(data_report.uri).read_text().splitlines()[0].strip() in page

    gallery = store.artifact_by_uri(first_run.artifact("explain", "gallery")["uri"])
    assert "<h1>Grad-CAM gallery</h1>" in client.get(f"/artifacts/{gallery.id}").text
    assert "Grad-CAM" in client.get(f"/files/{gallery.id}").text
    pngs = store.artifact_by_uri(first_run.artifact("explain", "gradcam_pngs")["uri"])
    name = sorted(p.name for p in Path(pngs.uri).iterdir())[0]
    assert f'src="/files/{pngs.id}/{name}"' in client.get(f"/artifacts/{pngs.id}").text
    png = client.get(f"/files/{pngs.id}/{name}")
    assert png.headers["content-type"] == "image/png" and png.content[:4] == b"\x89PNG"


def test_files_cannot_leave_their_artifact(client, store, first_run, home):
    pngs = store.artifact_by_uri(first_run.artifact("explain", "gradcam_pngs")["uri"])
    (home / "secret.txt").write_text("keep out")
    for path in ("%2e%2e/%2e%2e/%2e%2e/%2e%2e/secret.txt", "..%2f..%2f..%2f..%2fsecret.txt",
                 f"%2e%2e/%2e%2e/%2e%2e/%2e%2e{home}/secret.txt"):
        response = client.get(f"/files/{pngs.id}/{path}")
        assert response.status_code in (403, 404) and "keep out" not in response.text
    assert client.get(f"/files/{pngs.id}/%2e%2e/gallery").status_code == 403
    assert client.get("/files/999999").status_code == 404


def test_lineage_and_compare_pages(client, first_run, cached_run):
    page = client.get("/lineage", params={"ref": MODEL})
    assert page.status_code == 200 and "<svg" in page.text
    assert 'data-node="t' in page.text and ">ingest</text>" in page.text and ">pushed</text>" in page.text
    assert "produced by: task deploy" in page.text
    index = client.get("/lineage").text
    assert "/lineage?ref=model%3Adermpipe-isic2019/1" in index
    assert "neither a run id" in client.get("/lineage", params={"ref": "nope"}).text
    compare = client.get("/compare", params={"a": first_run.run_id, "b": cached_run.run_id})
    assert compare.status_code == 200
    assert compare.text.count("cache hit") == len(first_run.tasks) - 3 and "+0.0000" in compare.text
    assert compare.text.count("<td>yes</td>") >= 15  # same artifacts: the twin reused every output
    assert client.get("/compare", params={"a": first_run.run_id, "b": "nope"}).status_code == 404
