from dermpipe.pipelines.local import failure_cause, source_fingerprint


def test_failure_cause_is_the_last_exception_line():
    lines = ["Traceback (most recent call last):", '  File "x.py", line 1', "    KeyError: 'inner'",
             "dermpipe.schema.SchemaError: gt.csv: missing column(s) ['UNK']", "", "some trailing log"]
    assert failure_cause(lines) == "SchemaError: gt.csv: missing column(s) ['UNK']"
    assert failure_cause(["all good"]) == ""


def test_source_fingerprint_follows_file_changes(tmp_path):
    (tmp_path / "a.csv").write_text("x")
    before = source_fingerprint(str(tmp_path), 400)
    assert source_fingerprint(str(tmp_path), 400) == before
    (tmp_path / "a.csv").write_text("xy")
    assert source_fingerprint(str(tmp_path), 400) != before
    assert source_fingerprint("demo", 400) != source_fingerprint("demo", 200)
