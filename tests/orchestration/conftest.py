"""A local stub of the Kubeflow Pipelines v2beta1 REST API (the endpoints kfp.Client 2.17 calls), on loopback.

It keeps pipelines, versions, experiments, runs and recurring runs in memory, answers in the server's JSON shapes
(snake_case fields; `recurringRuns` in the recurring-run list, as the real server does) and records every request,
so tests can check what dermpipe sent. Runs advance through `run_script` (one step per GET) to exercise --wait.
"""

from __future__ import annotations

import email.parser
import email.policy
import itertools
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import yaml

PREFIX = "/apis/v2beta1"
NOW = "2026-11-25T21:00:00Z"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: dict | None = None
    upload: str | None = None  # the uploaded pipeline file's text (multipart uploads)


@dataclass
class KfpStub:
    host: str = ""
    requests: list[Request] = field(default_factory=list)
    pipelines: dict[str, dict] = field(default_factory=dict)
    versions: dict[str, dict] = field(default_factory=dict)
    experiments: dict[str, dict] = field(default_factory=dict)
    runs: dict[str, dict] = field(default_factory=dict)
    recurring: dict[str, dict] = field(default_factory=dict)
    # (run state, {task: state}) returned by successive GETs of a run; the last one sticks.
    run_script: list[tuple[str, dict[str, str]]] = field(default_factory=lambda: [("SUCCEEDED", {})])
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    _gets: dict[str, int] = field(default_factory=dict)

    def new_id(self, kind: str) -> str:
        return f"{kind}-{next(self._ids)}"

    def calls(self, method: str, path: str) -> list[Request]:
        return [r for r in self.requests if r.method == method and r.path == PREFIX + path]

    # ---- handlers: (status, body)
    def handle(self, method: str, path: str, query: dict[str, str], body: dict | None, upload: str | None):
        route = path.removeprefix(PREFIX)
        parts = route.strip("/").split("/")
        if route == "/healthz":
            return 200, {"multi_user": False, "pipeline_store": "database"}
        if route == "/pipelines/upload" and method == "POST":
            return self._upload_pipeline(query, upload)
        if route == "/pipelines/upload_version" and method == "POST":
            return self._upload_version(query, upload)
        if route == "/pipelines" and method == "GET":
            return 200, _page("pipelines", _filtered(self.pipelines.values(), query))
        if parts[0] == "pipelines" and len(parts) == 3 and parts[2] == "versions" and method == "GET":
            found = [v for v in self.versions.values() if v["pipeline_id"] == parts[1]]
            return 200, _page("pipeline_versions", _filtered(found, query))
        if route == "/experiments" and method == "POST":
            experiment = {**body, "experiment_id": self.new_id("exp"), "created_at": NOW,
                          "storage_state": "AVAILABLE"}
            self.experiments[experiment["experiment_id"]] = experiment
            return 200, experiment
        if route == "/experiments" and method == "GET":
            return 200, _page("experiments", _filtered(self.experiments.values(), query))
        if parts[0] == "experiments" and len(parts) == 2 and method == "GET":
            return (200, self.experiments[parts[1]]) if parts[1] in self.experiments else _not_found(route)
        if route == "/runs" and method == "POST":
            run = {**body, "run_id": self.new_id("run"), "created_at": NOW, "state": "PENDING",
                   "storage_state": "AVAILABLE"}
            self.runs[run["run_id"]] = run
            return 200, run
        if route == "/runs" and method == "GET":
            found = [r for r in self.runs.values()
                     if "experiment_id" not in query or r.get("experiment_id") == query["experiment_id"]]
            return 200, _page("runs", _filtered(found, query)[: int(query.get("page_size", 10))])
        if parts[0] == "runs" and len(parts) == 2 and method == "GET":
            return self._get_run(parts[1])
        if route == "/recurringruns" and method == "POST":
            recurring = {**body, "recurring_run_id": self.new_id("rec"), "created_at": NOW,
                         "status": "ENABLED" if body.get("mode") == "ENABLE" else "DISABLED"}
            self.recurring[recurring["recurring_run_id"]] = recurring
            return 200, recurring
        if route == "/recurringruns" and method == "GET":
            found = [r for r in self.recurring.values()
                     if "experiment_id" not in query or r.get("experiment_id") == query["experiment_id"]]
            return 200, {"recurringRuns": found, "total_size": len(found)} if found else {}
        if parts[0] == "recurringruns" and len(parts) == 2:
            rec_id, _, action = parts[1].partition(":")
            if rec_id not in self.recurring:
                return _not_found(route)
            if method == "POST" and action in ("enable", "disable"):
                self.recurring[rec_id]["status"] = "ENABLED" if action == "enable" else "DISABLED"
                self.recurring[rec_id]["mode"] = action.upper()
                return 200, {}
            if method == "DELETE":
                del self.recurring[rec_id]
                return 200, {}
            if method == "GET":
                return 200, self.recurring[rec_id]
        return 404, {"error": f"stub: no route {method} {path}", "code": 5}

    def _upload_pipeline(self, query, upload):
        name = query["name"]
        if any(p["display_name"] == name for p in self.pipelines.values()):
            return 409, {"error": f"pipeline {name} exists", "code": 6}
        pipeline = {"pipeline_id": self.new_id("pl"), "display_name": name, "name": name, "created_at": NOW}
        self.pipelines[pipeline["pipeline_id"]] = pipeline
        self._add_version(pipeline["pipeline_id"], name, upload)
        return 200, pipeline

    def _upload_version(self, query, upload):
        if query.get("pipelineid") not in self.pipelines:
            return _not_found(f"pipeline {query.get('pipelineid')}")
        return 200, self._add_version(query["pipelineid"], query["name"], upload)

    def _add_version(self, pipeline_id, name, upload):
        version = {"pipeline_id": pipeline_id, "pipeline_version_id": self.new_id("ver"), "display_name": name,
                   "name": name, "created_at": NOW, "pipeline_spec": next(d for d in yaml.safe_load_all(upload) if d)}
        self.versions[version["pipeline_version_id"]] = version
        return version

    def _get_run(self, run_id):
        if run_id not in self.runs:
            return _not_found(f"run {run_id}")
        step = self._gets.get(run_id, 0)
        self._gets[run_id] = step + 1
        state, tasks = self.run_script[min(step, len(self.run_script) - 1)]
        run = self.runs[run_id]
        run["state"] = state
        run["run_details"] = {"task_details": [
            {"run_id": run_id, "task_id": f"t-{name}", "display_name": name, "state": task_state}
            for name, task_state in tasks.items()]}
        if state in ("SUCCEEDED", "FAILED"):
            run["finished_at"] = "2026-11-25T21:30:00Z"
        return 200, run


def _filtered(items, query) -> list[dict]:
    items = list(items)
    if "filter" in query:
        for predicate in json.loads(query["filter"]).get("predicates", []):
            items = [i for i in items if i.get(predicate["key"]) == predicate.get("stringValue")]
    return items


def _page(key: str, items: list[dict]) -> dict:
    return {key: items, "total_size": len(items)} if items else {"total_size": 0}


def _not_found(what: str):
    return 404, {"error": f"{what} not found", "code": 5}


def _multipart_file(content_type: str, raw: bytes) -> str | None:
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == "uploadfile":
            return part.get_payload(decode=True).decode()
    return None


def _handler(stub: KfpStub):
    class Handler(BaseHTTPRequestHandler):
        def _serve(self, method: str):
            url = urlparse(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body, upload = None, None
            content_type = self.headers.get("Content-Type", "")
            if content_type.startswith("multipart/form-data"):
                upload = _multipart_file(content_type, raw)
            elif raw:
                body = json.loads(raw)
            stub.requests.append(Request(method, url.path, query, body, upload))
            status, payload = stub.handle(method, url.path, query, body, upload)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):  # noqa: N802 (http.server API)
            self._serve("GET")

        def do_POST(self):  # noqa: N802
            self._serve("POST")

        def do_DELETE(self):  # noqa: N802
            self._serve("DELETE")

        def log_message(self, *args):
            pass

    return Handler


@pytest.fixture
def kfp_stub():
    stub = KfpStub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(stub))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    stub.host = f"http://127.0.0.1:{server.server_address[1]}"
    yield stub
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def training_package(tmp_path_factory) -> Path:
    """The training pipeline compiled once for the session (KFP placement)."""
    from dermpipe.pipelines.compile import compile_pipeline

    return compile_pipeline("training", tmp_path_factory.mktemp("pkg") / "training.yaml",
                            base_image="reg.example/dp/base:t", gpu_image="reg.example/dp/trainer-gpu:t")
