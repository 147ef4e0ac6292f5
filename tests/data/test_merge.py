import pandas as pd

from dermpipe.data.merge import inspect_image, merge_dataset, merge_tables, render_report

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


def test_metadata_normalised_or_refused_is_counted_and_listed():
    meta = _meta("a", "b", "c").assign(sex=["Female", "F", "male"],
                                      anatom_site_general=["Anterior Torso", "torso", "head/neck"])
    files = {i: f"{i}.jpg" for i in "abc"}
    result = merge_tables(_truth(("a", "MEL"), ("b", "NV"), ("c", "NV")), meta, files,
                          image_info={i: (1, 1, "") for i in "abc"})
    assert len(result.table) == 3  # a metadata value never drops a row
    assert result.table.set_index("image")[["sex", "anatom_site_general"]].loc["a"].tolist() == ["female",
                                                                                               "anterior torso"]
    assert result.counts["metadata_values_normalised"] == 2 and result.counts["metadata_values_set_to_missing"] == 2
    report = render_report(result)
    normalised = report.split("### Metadata values normalised the ISIC Archive's way (isic-metadata) (2)")[1]
    assert "| a | sex | Female | 'Female' normalised" in normalised.split("###")[0]
    refused = report.split("### Metadata values refused by isic-metadata (set to missing) (2)")[1]
    assert "| b | anatom_site_general | torso | isic-metadata refused it" in refused
    assert "| b | sex | F |" in refused
    assert "metadata values normalised | 2 |" in report


def test_inspect_image_names_the_failure(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    assert inspect_image(bad)[2].startswith("not an image")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    assert inspect_image(empty)[2]


def test_merge_real_sample(isic_sample, tmp_path):
    from dermpipe.data.ingest import ingest_source

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


# --- validation: every kind of bad image, generated next to real sample images --------------------------------------

def _jpeg_bytes(mode="RGB", size=(64, 48)) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new(mode, size, 128 if mode == "L" else (120, 80, 60) if mode == "RGB" else (10, 20, 30, 40)).save(
        buffer, "JPEG")
    return buffer.getvalue()


def _bomb_jpeg(side: int = 20000) -> bytes:
    """A tiny file whose header claims side x side pixels: the size check must refuse it undecoded."""
    data = bytearray(_jpeg_bytes(size=(16, 16)))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = side.to_bytes(2, "big") + side.to_bytes(2, "big")
    return bytes(data)


def _bad_files() -> dict[str, tuple[bytes, str]]:
    import io

    from PIL import Image

    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, "PNG")
    good = _jpeg_bytes()
    return {
        "BAD_zero": (b"", "zero_byte"),
        "BAD_text": (b"this is not an image at all", "not_an_image"),
        "BAD_png": (png.getvalue(), "not_jpeg"),
        "BAD_trunc": (good[: len(good) // 2], "truncated"),
        "BAD_grey": (_jpeg_bytes("L"), "not_rgb"),
        "BAD_cmyk": (_jpeg_bytes("CMYK"), "not_rgb"),
        "BAD_bomb": (_bomb_jpeg(), "decompression_bomb"),
    }


def test_inspect_bytes_names_each_defect():
    from dermpipe.data.merge import inspect_bytes, invalid_kind

    assert inspect_bytes(_jpeg_bytes()) == (64, 48, "")
    for name, (data, kind) in _bad_files().items():
        width, height, reason = inspect_bytes(data)
        assert reason, name
        assert invalid_kind(reason) == kind, (name, reason)
    assert "grey-scale" in inspect_bytes(_jpeg_bytes("L"))[2]
    assert "CMYK" in inspect_bytes(_jpeg_bytes("CMYK"))[2]
    assert "9000x9000 = 81 MP exceeds the 64 MP limit" in inspect_bytes(_bomb_jpeg(9000))[2]  # our limit
    assert "exceeds limit" in inspect_bytes(_bomb_jpeg(20000))[2]  # Pillow's own guard, beyond ours


def _dataset_with_bad_images(isic_sample, root, n_good=12):
    """Real sample images + every kind of bad file + an exact duplicate + a row without image + an orphan image."""
    import shutil

    from dermpipe.data.ingest import ingest_source

    src = root / "src"
    images = src / "ISIC_2019_Training_Input" / "ISIC_2019_Training_Input"
    images.mkdir(parents=True)
    real = sorted((isic_sample / "ISIC_2019_Training_Input" / "ISIC_2019_Training_Input").glob("*.jpg"))[:n_good]
    for path in real:
        shutil.copy(path, images / path.name)
    shutil.copy(real[0], images / "DUP_copy.jpg")
    bad = _bad_files()
    for name, (data, _) in bad.items():
        (images / f"{name}.jpg").write_bytes(data)
    (images / "ORPHAN.jpg").write_bytes(_jpeg_bytes())
    truth = pd.read_csv(isic_sample / "ISIC_2019_Training_GroundTruth.csv")
    truth = truth[truth["image"].isin([p.stem for p in real])]
    extra = _truth(*[(name, "NV") for name in [*bad, "DUP_copy", "NO_FILE"]])
    pd.concat([truth, extra]).to_csv(src / "ISIC_2019_Training_GroundTruth.csv", index=False)
    meta = pd.read_csv(isic_sample / "ISIC_2019_Training_Metadata.csv")
    meta.to_csv(src / "ISIC_2019_Training_Metadata.csv", index=False)
    ingest_source(str(src), root / "raw")
    return root / "raw", real


def test_merge_drops_and_reports_every_bad_image(isic_sample, tmp_path):
    raw, real = _dataset_with_bad_images(isic_sample, tmp_path)
    result = merge_dataset(raw)
    assert len(result.table) == len(real) + 1  # good images + the duplicate copy
    assert sorted(p.image for p in result.invalid) == sorted(_bad_files())
    counts = result.counts
    assert counts["rows_dropped_unreadable_image"] == 7
    for kind in ("zero_byte", "not_an_image", "not_jpeg", "truncated", "decompression_bomb"):
        assert counts[f"invalid_{kind}"] == 1, kind
    assert counts["invalid_not_rgb"] == 2
    assert counts["rows_dropped_missing_image"] == 1
    assert counts["images_without_ground_truth"] == 1
    assert counts["duplicate_groups"] == 1 and counts["duplicate_images"] == 1
    report = render_report(result)
    for text in ("Invalid images (failed validation) (7)", "BAD_trunc", "truncated", "zero-byte", "CMYK",
                 "decompression bomb", "not a JPEG (the file is PNG)", "Exact duplicates", "DUP_copy", "NO_FILE",
                 "ORPHAN", "Images with no ground-truth row (1)"):
        assert text in report, text
    dup = result.table.set_index("image")
    assert dup.loc["DUP_copy", "sha256"] == dup.loc[real[0].stem, "sha256"]


def test_fail_policy_raises_after_writing_the_report(isic_sample, tmp_path):
    import pytest
    from kfp.dsl import Dataset, Markdown, Metrics

    from dermpipe.data.merge import InvalidImagesError, run

    raw, _ = _dataset_with_bad_images(isic_sample, tmp_path, n_good=3)
    artifacts = {name: cls(name=name, uri=str(tmp_path / "out" / name)) for name, cls in
                 (("merged", Dataset), ("report", Markdown), ("stats", Metrics))}
    with pytest.raises(InvalidImagesError, match=r"7 image\(s\) failed validation .*BAD_"):
        run(Dataset(name="raw", uri=str(raw)), artifacts["merged"], artifacts["report"], artifacts["stats"], "fail")
    assert "BAD_bomb" in (tmp_path / "out" / "report").read_text()
    assert not (tmp_path / "out" / "merged").exists()
    with pytest.raises(ValueError, match=r"invalid_images=.* is not supported; choose one of \[.drop., .fail.\]"):
        run(Dataset(name="raw", uri=str(raw)), artifacts["merged"], artifacts["report"], artifacts["stats"], "skip")
    run(Dataset(name="raw", uri=str(raw)), artifacts["merged"], artifacts["report"], artifacts["stats"], "drop")
    assert len(pd.read_parquet(tmp_path / "out" / "merged")) == 4
    assert artifacts["stats"].metadata["invalid_truncated"] == 1.0


def test_duplicates_with_conflicting_labels_are_flagged():
    from dermpipe.data.merge import duplicate_counts, duplicate_problems

    table = pd.DataFrame({"image": ["a", "b", "c"], "label": ["NV", "MEL", "NV"], "sha256": ["h", "h", "x"]})
    assert duplicate_counts(table) == {"duplicate_groups": 1, "duplicate_images": 1,
                                       "duplicate_groups_conflicting_labels": 1}
    problems = duplicate_problems(table)
    assert [p.image for p in problems] == ["a", "b"] and "labels differ (MEL, NV)" in problems[0].reason


def test_cli_refuses_an_unknown_policy_before_running():
    from typer.testing import CliRunner

    from dermpipe.cli.main import app

    result = CliRunner().invoke(app, ["run", "--invalid-images", "skip"])
    assert result.exit_code == 2
    assert "merge: merge parameter invalid_images='skip' is not supported; choose one of ['drop', 'fail']" \
        in result.output  # the pre-flight, with merge's own check
    assert "--invalid-images" in CliRunner().invoke(app, ["run", "--help"]).output
