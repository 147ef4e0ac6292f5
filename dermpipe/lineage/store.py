"""The local lineage store: runs, tasks, artifacts and the edges between them, in SQLite.

Written as a local run runs (pipelines/local.py records every task's inputs and outputs here), read by
`dermpipe lineage` and `dermpipe ui`. Artifacts are keyed by URI: a task served from kfp.local's cache "produces" the
same URIs as the task that first wrote them, so a re-run links to the artifacts of the run that made them.

    runs(run_id, pipeline, status, started, finished, params, pipeline_root, error, code)
    tasks(id, run_id, name, status, started, finished, seconds, cached, error, params)
    artifacts(id, uri, type, name, metadata, hash)
    edges(task_id, artifact_id, direction 'input'|'output', name)
    model_versions(model_name, version, registry_uri, artifact_id)   from deploy outputs' metadata
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dermpipe import config

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, pipeline TEXT, status TEXT, started TEXT, finished TEXT DEFAULT '',
    params TEXT DEFAULT '{}', pipeline_root TEXT DEFAULT '', error TEXT DEFAULT '', code TEXT DEFAULT '{}');
CREATE TABLE IF NOT EXISTS tasks (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL REFERENCES runs(run_id) ON UPDATE CASCADE,
    name TEXT NOT NULL, status TEXT, started TEXT, finished TEXT DEFAULT '', seconds REAL DEFAULT 0,
    cached INTEGER DEFAULT 0, error TEXT DEFAULT '', params TEXT DEFAULT '{}', UNIQUE(run_id, name));
CREATE TABLE IF NOT EXISTS artifacts (
    id INTEGER PRIMARY KEY AUTOINCREMENT, uri TEXT NOT NULL UNIQUE, type TEXT, name TEXT,
    metadata TEXT DEFAULT '{}', hash TEXT DEFAULT '');
CREATE TABLE IF NOT EXISTS edges (
    task_id INTEGER NOT NULL REFERENCES tasks(id), artifact_id INTEGER NOT NULL REFERENCES artifacts(id),
    direction TEXT NOT NULL CHECK (direction IN ('input', 'output')), name TEXT NOT NULL,
    PRIMARY KEY (task_id, artifact_id, direction, name));
CREATE TABLE IF NOT EXISTS model_versions (
    model_name TEXT NOT NULL, version INTEGER NOT NULL, registry_uri TEXT, artifact_id INTEGER REFERENCES artifacts(id),
    PRIMARY KEY (model_name, version));
CREATE INDEX IF NOT EXISTS edges_artifact ON edges(artifact_id, direction);
"""

HASH_KEYS = ("sha256", "manifest_sha256", "content_sha256", "hash")
MAX_HASH_BYTES = 1 << 30  # larger artifacts are recorded without a content hash


def store_path() -> Path:
    return config.home() / "lineage.sqlite"


@contextlib.contextmanager
def connect(path: Path | None = None) -> Iterator[sqlite3.Connection]:
    """A connection with the schema in place; commits on success, rolls back on error, always closes."""
    path = Path(path or store_path())
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=30)
    conn.row_factory = sqlite3.Row
    try:
        conn.execute("PRAGMA foreign_keys = ON")
        conn.executescript(SCHEMA)
        _migrate(conn)
        with conn:
            yield conn
    finally:
        conn.close()


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a store written by an earlier dermpipe up to this schema (columns added since)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
    if "code" not in columns:
        conn.execute("ALTER TABLE runs ADD COLUMN code TEXT DEFAULT '{}'")
        conn.commit()


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def content_hash(uri: str, metadata: Mapping[str, Any]) -> str:
    """sha256 of an artifact: the one its metadata declares, else of its file, else of its folder's files (relative
    names and bytes); '' for remote or oversized artifacts."""
    for key in HASH_KEYS:
        value = metadata.get(key)
        if isinstance(value, str) and re.fullmatch(r"[0-9a-f]{64}", value):
            return value
    path = Path(uri)
    if not path.exists():
        return ""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    if sum(f.stat().st_size for f in files) > MAX_HASH_BYTES:
        return ""
    digest = hashlib.sha256()
    for file in files:
        if file != path:
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with open(file, "rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------- writing (called from the local runner's hook)

def record_run(run_id: str, *, pipeline: str, status: str, started: str, params: Mapping[str, Any],
               pipeline_root: str, finished: str = "", error: str = "", code: Mapping[str, Any] | None = None,
               path: Path | None = None) -> None:
    """Insert a run, or update its status, end and error; `code` names the code that ran it (version, git)."""
    with connect(path) as conn:
        conn.execute(
            "INSERT INTO runs (run_id, pipeline, status, started, finished, params, pipeline_root, error, code) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(run_id) DO UPDATE SET status=excluded.status, "
            "finished=excluded.finished, error=excluded.error",
            (run_id, pipeline, status, started, finished, _dumps(dict(params)), pipeline_root, error,
             _dumps(dict(code or {}))))


def rename_run(old: str, new: str, path: Path | None = None) -> None:
    """kfp.local names the run once its first task starts; the store follows (tasks cascade)."""
    with connect(path) as conn:
        conn.execute("UPDATE runs SET run_id = ? WHERE run_id = ?", (new, old))


def start_task(run_id: str, name: str, started: str, params: Mapping[str, Any],
               inputs: Mapping[str, Mapping[str, Any]], path: Path | None = None) -> int:
    """Record a task as running with its parameters and input artifacts (name -> {type, uri, metadata})."""
    with connect(path) as conn:
        cur = conn.execute(
            "INSERT INTO tasks (run_id, name, status, started, params) VALUES (?, ?, 'running', ?, ?) "
            "ON CONFLICT(run_id, name) DO UPDATE SET status='running', started=excluded.started RETURNING id",
            (run_id, name, started, _dumps(dict(params))))
        task_id = int(cur.fetchone()[0])
        for input_name, artifact in inputs.items():
            _link(conn, task_id, input_name, artifact, "input")
    return task_id


def finish_task(task_id: int, *, status: str, finished: str, seconds: float, cached: bool, error: str,
                outputs: Mapping[str, Mapping[str, Any]], path: Path | None = None) -> None:
    """Record a task's end and its output artifacts (registry versions from deploy outputs included)."""
    with connect(path) as conn:
        conn.execute("UPDATE tasks SET status=?, finished=?, seconds=?, cached=?, error=? WHERE id=?",
                     (status, finished, seconds, int(cached), error, task_id))
        for output_name, artifact in outputs.items():
            artifact_id = _link(conn, task_id, output_name, artifact, "output")
            meta = artifact.get("metadata") or {}
            # the deploy that pushed a version is its origin; later idempotent deploys of it are not
            if {"model_name", "version", "registry_uri"} <= set(meta) and meta.get("action", "pushed") == "pushed":
                conn.execute("INSERT OR REPLACE INTO model_versions VALUES (?, ?, ?, ?)",
                             (meta["model_name"], int(meta["version"]), meta["registry_uri"], artifact_id))


def _link(conn: sqlite3.Connection, task_id: int, name: str, artifact: Mapping[str, Any], direction: str) -> int:
    uri, meta = artifact["uri"], dict(artifact.get("metadata") or {})
    row = conn.execute("SELECT id, hash FROM artifacts WHERE uri = ?", (uri,)).fetchone()
    if row is None:
        cur = conn.execute("INSERT INTO artifacts (uri, type, name, metadata, hash) VALUES (?, ?, ?, ?, ?)",
                           (uri, artifact.get("type", ""), name, _dumps(meta), content_hash(uri, meta)))
        artifact_id = int(cur.lastrowid)
    else:
        artifact_id = int(row["id"])
        if meta and direction == "output":  # the producer's metadata is the complete one
            conn.execute("UPDATE artifacts SET metadata = ?, hash = COALESCE(NULLIF(hash, ''), ?) WHERE id = ?",
                         (_dumps(meta), row["hash"] or content_hash(uri, meta), artifact_id))
    conn.execute("INSERT OR IGNORE INTO edges VALUES (?, ?, ?, ?)", (task_id, artifact_id, direction, name))
    return artifact_id


# ---------------------------------------------------------------- reading

@dataclass(frozen=True)
class Task:
    id: int
    run_id: str
    name: str
    status: str
    started: str
    finished: str
    seconds: float
    cached: bool
    error: str
    params: dict[str, Any]


@dataclass(frozen=True)
class Artifact:
    id: int
    uri: str
    type: str
    name: str
    metadata: dict[str, Any]
    hash: str


@dataclass(frozen=True)
class Run:
    run_id: str
    pipeline: str
    status: str
    started: str
    finished: str
    params: dict[str, Any]
    pipeline_root: str
    error: str
    code: dict[str, Any]


def _task(row: sqlite3.Row) -> Task:
    return Task(row["id"], row["run_id"], row["name"], row["status"], row["started"], row["finished"] or "",
                float(row["seconds"] or 0), bool(row["cached"]), row["error"] or "", json.loads(row["params"]))


def _artifact(row: sqlite3.Row) -> Artifact:
    return Artifact(row["id"], row["uri"], row["type"] or "", row["name"] or "", json.loads(row["metadata"]),
                    row["hash"] or "")


def _run(row: sqlite3.Row) -> Run:
    return Run(row["run_id"], row["pipeline"] or "", row["status"] or "", row["started"] or "",
               row["finished"] or "", json.loads(row["params"]), row["pipeline_root"] or "", row["error"] or "",
               json.loads(row["code"] or "{}"))


class Store:
    """Read access to the lineage store (one connection per call: the UI serves requests from threads)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path or store_path())

    def exists(self) -> bool:
        return self.path.exists()

    def _rows(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with connect(self.path) as conn:
            return conn.execute(sql, args).fetchall()

    def runs(self, limit: int = 200) -> list[Run]:
        return [_run(r) for r in self._rows("SELECT * FROM runs ORDER BY started DESC LIMIT ?", (limit,))]

    def run(self, run_id: str) -> Run | None:
        rows = self._rows("SELECT * FROM runs WHERE run_id = ?", (run_id,))
        return _run(rows[0]) if rows else None

    def tasks(self, run_id: str) -> list[Task]:
        return [_task(r) for r in self._rows("SELECT * FROM tasks WHERE run_id = ? ORDER BY id", (run_id,))]

    def task(self, task_id: int) -> Task | None:
        rows = self._rows("SELECT * FROM tasks WHERE id = ?", (task_id,))
        return _task(rows[0]) if rows else None

    def artifact(self, artifact_id: int) -> Artifact | None:
        rows = self._rows("SELECT * FROM artifacts WHERE id = ?", (artifact_id,))
        return _artifact(rows[0]) if rows else None

    def artifact_by_uri(self, uri: str) -> Artifact | None:
        rows = self._rows("SELECT * FROM artifacts WHERE uri = ? OR uri = ?", (uri, uri.rstrip("/")))
        return _artifact(rows[0]) if rows else None

    def model_version(self, model_name: str, version: int) -> Artifact | None:
        rows = self._rows("SELECT a.* FROM model_versions m JOIN artifacts a ON a.id = m.artifact_id "
                          "WHERE m.model_name = ? AND m.version = ?", (model_name, version))
        return _artifact(rows[0]) if rows else None

    def model_versions(self) -> list[tuple[str, int, str]]:
        rows = self._rows("SELECT model_name, version, registry_uri FROM model_versions ORDER BY model_name, version")
        return [(r[0], int(r[1]), r[2]) for r in rows]

    def io(self, task_id: int, direction: str) -> list[tuple[str, Artifact]]:
        """A task's inputs or outputs as (input/output name, artifact)."""
        rows = self._rows("SELECT e.name AS edge_name, a.* FROM edges e JOIN artifacts a ON a.id = e.artifact_id "
                          "WHERE e.task_id = ? AND e.direction = ? ORDER BY a.id", (task_id, direction))
        return [(r["edge_name"], _artifact(r)) for r in rows]

    def producers(self, artifact_id: int) -> list[Task]:
        """Tasks that output the artifact: the one that wrote it first, then runs that reused it from the cache."""
        rows = self._rows("SELECT t.* FROM edges e JOIN tasks t ON t.id = e.task_id WHERE e.artifact_id = ? AND "
                          "e.direction = 'output' ORDER BY t.cached, t.id", (artifact_id,))
        return [_task(r) for r in rows]

    def consumers(self, artifact_id: int) -> list[Task]:
        rows = self._rows("SELECT t.* FROM edges e JOIN tasks t ON t.id = e.task_id WHERE e.artifact_id = ? AND "
                          "e.direction = 'input' ORDER BY t.id", (artifact_id,))
        return [_task(r) for r in rows]

    def headline(self, run_id: str) -> dict[str, float]:
        """Test balanced accuracy, accuracy and macro F1 of a run (from its evaluate task's Metrics)."""
        rows = self._rows("SELECT a.metadata FROM tasks t JOIN edges e ON e.task_id = t.id AND e.direction = 'output' "
                          "JOIN artifacts a ON a.id = e.artifact_id WHERE t.run_id = ? AND t.name = 'evaluate' "
                          "AND e.name = 'metrics'", (run_id,))
        meta = json.loads(rows[0][0]) if rows else {}
        return {k: float(meta[k]) for k in ("balanced_accuracy", "accuracy", "macro_f1") if k in meta}

    def task_edges(self, run_id: str) -> list[tuple[str, str]]:
        """The run's DAG: (upstream task, downstream task) wherever one consumes an artifact the other output."""
        rows = self._rows(
            "SELECT DISTINCT p.name, c.name FROM tasks p JOIN edges o ON o.task_id = p.id AND o.direction = 'output' "
            "JOIN edges i ON i.artifact_id = o.artifact_id AND i.direction = 'input' "
            "JOIN tasks c ON c.id = i.task_id AND c.run_id = p.run_id WHERE p.run_id = ? ORDER BY p.id, c.id",
            (run_id,))
        return [(r[0], r[1]) for r in rows]
