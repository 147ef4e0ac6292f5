import pandas as pd

from dermpipe.components.merge import inspect_image, merge_dataset, merge_tables, render_report

GT_COLUMNS = ["image", "MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]


def _truth(*rows):
    return pd.DataFrame([[img, *[float(c == lab) for c in GT_COLUMNS[1:]]] for img, lab in rows], columns=GT_COLUMNS)


def _meta(*images):
    return pd.DataFrame([{"image": i, "age_approx": 40, "anatom_site_general": "head/neck", "lesion_id": f"L{i}",
                          "sex": "male"} for i in images])


def test_every_dropped_row_is_counted_and_listed():
    truth = _truth(("a", "MEL"), ("b", "NV"), ("c", "BCC"), ("d", "UNK"))
    files = {"a": "img/a.jpg", "b": "img/b.jpg", "d": "img/d.jpg", "orphan": "img/orphan.jpg"}
    info = {"a": (10, 10, ""), "b": (0, 0, "cannot be decoded as an image (truncated)"), "d": (10, 10, "")}
    result = merge_tables(truth, _meta("a", "b"), files, image_info=info)
    assert result.table["image"].tolist() == ["a"]
    assert result.counts["rows_dropped_missing_image"] == 1  # c
    assert result.counts["rows_dropped_unreadable_image"] == 1  # b
    assert result.counts["rows_dropped_bad_label"] == 1  # d (UNK)
    assert result.counts["images_without_ground_truth"] == 2  # orphan, d (its row was dropped)
    listed = {(p.image, p.action) for p in result.problems}
    assert {("b", "dropped"), ("c", "dropped"), ("d", "dropped"), ("orphan", "dropped")} <= listed
    report = render_report(result)
    for name in ("orphan", "truncated", "UNK is set", "no image file"):
        assert name in report


def test_left_join_keeps_rows_without_metadata():
    result = merge_tables(_truth(("a", "MEL"), ("b", "NV")), _meta("a"), {"a": "a.jpg", "b": "b.jpg"},
                          image_info={"a": (1, 1, ""), "b": (1, 1, "")})
    assert result.counts["rows_without_metadata"] == 1
    b = result.table.set_index("image").loc["b"]
    assert b["label"] == "NV" and pd.isna(b["sex"])


def test_inspect_image_names_the_failure(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    assert inspect_image(bad)[2].startswith("cannot be decoded")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    assert inspect_image(empty)[2]


def test_merge_real_sample(isic_sample, tmp_path):
    from dermpipe.components.ingest import ingest_source

    ingest_source(str(isic_sample), tmp_path / "raw")
    result = merge_dataset(tmp_path / "raw")
    table = result.table
    assert len(table) == 475 and result.problems == []
    assert table["label"].value_counts().to_dict() == {"NV": 361, "MEL": 114}
    row = table.set_index("image").loc["ISIC_0000017_downsampled"]
    assert row["path"].endswith("ISIC_0000017_downsampled.jpg") and len(row["sha256"]) == 64
    assert (table["width"] > 0).all()


def test_merge_demo(demo_dataset):
    result = merge_dataset(demo_dataset)
    assert len(result.table) == 160
    assert result.counts["rows_out"] == 160
    assert set(result.table["label"]) == {"MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC"}
