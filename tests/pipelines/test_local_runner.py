from dermpipe.pipelines.local import failure_cause, source_fingerprint


def test_failure_cause_is_the_last_exception_line():
    lines = ["Traceback (most recent call last):", '  File "x.py", line 1', "    KeyError: 'inner'",
             "dermpipe.data.schema.SchemaError: gt.csv: missing column(s) ['UNK']", "", "some trailing log"]
    assert failure_cause(lines) == "SchemaError: gt.csv: missing column(s) ['UNK']"
    assert failure_cause(["all good"]) == ""


def test_source_fingerprint_follows_file_changes(tmp_path):
    (tmp_path / "a.csv").write_text("x")
    before = source_fingerprint(str(tmp_path), 400)
    assert source_fingerprint(str(tmp_path), 400) == before
    (tmp_path / "a.csv").write_text("xy")
    assert source_fingerprint(str(tmp_path), 400) != before
    assert source_fingerprint("demo", 400) != source_fingerprint("demo", 200)


def test_artifacts_name_the_image_and_commit_of_a_compiled_pipeline(monkeypatch):
    from types import SimpleNamespace

    from dermpipe.lineage.artifacts import annotate

    artifact = SimpleNamespace(metadata={})
    annotate(artifact, {"rows": 3})
    assert "image" not in artifact.metadata and "git_commit" not in artifact.metadata  # a local run: nothing to say
    monkeypatch.setenv("DERMPIPE_IMAGE", "reg.example/dp/base:0.1.0")
    monkeypatch.setenv("DERMPIPE_GIT_COMMIT", "a" * 40)
    annotate(artifact, {"rows": 4})
    assert artifact.metadata["image"] == "reg.example/dp/base:0.1.0" and artifact.metadata["git_commit"] == "a" * 40
    assert artifact.metadata["rows"] == 4 and artifact.metadata["code_version"].startswith("0.1.0+")
