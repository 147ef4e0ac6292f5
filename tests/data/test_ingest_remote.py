"""kaggle: and isic: ingest sources at their client boundary: a fake KaggleApi, and a fake ISIC API on loopback."""

import io
import json
import os
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pandas as pd
import pytest

from dermpipe.data.ingest import IngestError, ingest_source

SECRET = "kaggle-secret-key-0123456789abcdef"
N_IMAGES = 6


def _sample_images(isic_sample, n=N_IMAGES) -> list[Path]:
    return sorted((isic_sample / "ISIC_2019_Training_Input" / "ISIC_2019_Training_Input").glob("*.jpg"))[:n]


def _kaggle_zip(isic_sample, n=N_IMAGES) -> bytes:
    """The andrewmvd/isic-2019 archive layout with n real images."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for csv in isic_sample.glob("*.csv"):
            zf.write(csv, csv.name)
        for image in _sample_images(isic_sample, n):
            zf.write(image, f"ISIC_2019_Training_Input/ISIC_2019_Training_Input/{image.name}")
    return buffer.getvalue()


class FakeKaggleApi:
    """KaggleApi.dataset_download_files as the real client behaves: skips a current archive unless force."""

    def __init__(self, archive: bytes):
        self.archive, self.calls, self.transfers = archive, [], 0

    def dataset_download_files(self, dataset, path=None, force=False, quiet=True, unzip=False):
        self.calls.append({"dataset": dataset, "force": force, "unzip": unzip})
        out = Path(path) / f"{dataset.split('/')[1]}.zip"
        if out.exists() and out.read_bytes() == self.archive and not force:
            return
        self.transfers += 1
        out.write_bytes(self.archive)


@pytest.fixture()
def kaggle_env(tmp_path, monkeypatch):
    monkeypatch.setenv("DERMPIPE_DOWNLOAD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    monkeypatch.setenv("KAGGLE_KEY", SECRET)
    return tmp_path


def test_kaggle_ingest_downloads_once_and_extracts_once(isic_sample, kaggle_env, monkeypatch):
    import dermpipe.data.sources.kaggle as source_kaggle

    api = FakeKaggleApi(_kaggle_zip(isic_sample))
    monkeypatch.setattr(source_kaggle, "make_api", lambda: api)
    first = ingest_source("kaggle:andrewmvd/isic-2019", kaggle_env / "run1")
    assert first["source_kind"] == "kaggle" and first["n_images"] == N_IMAGES
    assert first["download_downloaded"] == 1 and api.calls[0] == {"dataset": "andrewmvd/isic-2019", "force": False,
                                                                  "unzip": False}
    extracted = next((kaggle_env / "cache").glob("*/extracted"))
    inode = extracted.stat().st_ino
    second = ingest_source("kaggle:andrewmvd/isic-2019", kaggle_env / "run2")
    assert api.transfers == 1 and second["download_downloaded"] == 0 and second["download_skipped"] == 1
    assert extracted.stat().st_ino == inode  # not extracted again
    assert second["manifest_sha256"] == first["manifest_sha256"]
    api.archive = _kaggle_zip(isic_sample, n=N_IMAGES - 2)  # a new dataset version on Kaggle
    third = ingest_source("kaggle:andrewmvd/isic-2019", kaggle_env / "run3")
    assert third["download_downloaded"] == 1 and third["n_images"] == N_IMAGES - 2


def test_kaggle_credentials_never_leak(isic_sample, kaggle_env, monkeypatch, capfd):
    import dermpipe.data.sources.kaggle as source_kaggle

    class FailingApi(FakeKaggleApi):
        def dataset_download_files(self, *args, **kwargs):
            raise RuntimeError(f"403 Forbidden for user someone key={SECRET}")

    monkeypatch.setattr(source_kaggle, "make_api", lambda: FakeKaggleApi(_kaggle_zip(isic_sample)))
    summary = ingest_source("kaggle:andrewmvd/isic-2019", kaggle_env / "raw")
    monkeypatch.setattr(source_kaggle, "make_api", lambda: FailingApi(b""))
    with pytest.raises(IngestError, match="download failed") as failure:
        ingest_source("kaggle:andrewmvd/other", kaggle_env / "raw2")
    assert SECRET not in str(failure.value) and "key=***" in str(failure.value)
    out, err = capfd.readouterr()
    assert SECRET not in out + err + json.dumps(summary)
    for path in kaggle_env.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_kaggle_json_must_be_private(tmp_path):
    from dermpipe.data.sources.kaggle import KaggleSourceError, credentials_source

    home = tmp_path / "home"
    with pytest.raises(KaggleSourceError, match="no Kaggle credentials: set KAGGLE_USERNAME and KAGGLE_KEY"):
        credentials_source({}, home)
    token = home / ".kaggle" / "kaggle.json"
    token.parent.mkdir(parents=True)
    token.write_text(json.dumps({"username": "someone", "key": SECRET}))
    os.chmod(token, 0o644)
    with pytest.raises(KaggleSourceError, match=r"readable by other users \(mode 644\).*chmod 600") as refused:
        credentials_source({}, home)
    assert SECRET not in str(refused.value)
    os.chmod(token, 0o600)
    assert credentials_source({}, home) == str(token)
    assert credentials_source({"KAGGLE_USERNAME": "u", "KAGGLE_KEY": "k"}, home).startswith("environment")
    config_dir = tmp_path / "elsewhere"
    config_dir.mkdir()
    (config_dir / "kaggle.json").write_text("{not json")
    os.chmod(config_dir / "kaggle.json", 0o600)
    with pytest.raises(KaggleSourceError, match="not valid JSON"):
        credentials_source({"KAGGLE_CONFIG_DIR": str(config_dir)}, home)


def test_kaggle_dataset_name_is_checked(tmp_path):
    from dermpipe.data.sources.kaggle import KaggleSourceError, download_dataset

    with pytest.raises(KaggleSourceError, match="expected kaggle:<owner>/<dataset>"):
        download_dataset("isic-2019", tmp_path, api=FakeKaggleApi(b""))


# --- ISIC Archive API v2, served on loopback -------------------------------------------------------------------------

class FakeIsic:
    """The two endpoints dermpipe uses: images/search/ (cursor pages) and the signed image URLs (with Range)."""

    def __init__(self, images: dict[str, bytes], diagnoses: dict[str, dict[str, str]]):
        self.images, self.diagnoses = images, diagnoses
        self.file_requests: list[tuple[str, str]] = []
        self.search_queries: list[dict[str, list[str]]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def record(self, isic_id: str) -> dict:
        return {"isic_id": isic_id, "files": {"full": {"url": f"{self.url}/files/{isic_id}.jpg?sig=abc",
                                                       "size": len(self.images[isic_id])}},
                "metadata": {"clinical": {"age_approx": 45, "sex": "female", "anatom_site_general": "head/neck",
                                          "lesion_id": f"IL_{isic_id[-3:]}", **self.diagnoses[isic_id]}}}

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                url = urlparse(self.path)
                if url.path == "/api/v2/images/search/":
                    query = parse_qs(url.query)
                    fake.search_queries.append(query)
                    ids = sorted(fake.images)
                    start = int(query.get("cursor", ["0"])[0])
                    page = ids[start:start + 4]
                    more = start + 4 < len(ids)
                    body = {"count": len(ids), "results": [fake.record(i) for i in page],
                            "next": f"{fake.url}/api/v2/images/search/?cursor={start + 4}&limit=4" if more else None}
                    return self._send(200, json.dumps(body).encode(), "application/json")
                if url.path.startswith("/files/"):
                    isic_id = Path(url.path).stem
                    data = fake.images[isic_id]
                    rng = self.headers.get("Range", "")
                    fake.file_requests.append((isic_id, rng))
                    if rng:
                        start = int(rng.split("=")[1].split("-")[0])
                        return self._send(206, data[start:], "image/jpeg")
                    return self._send(200, data, "image/jpeg")
                return self._send(404, b"{}", "application/json")

            def _send(self, status, body, content_type):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def fake_isic(isic_sample, tmp_path, monkeypatch):
    images = {f"ISIC_{9000000 + i}": p.read_bytes() for i, p in enumerate(_sample_images(isic_sample, 7))}
    names = sorted(images)
    diagnoses = {names[0]: {"diagnosis_1": "Malignant", "diagnosis_3": "Melanoma Invasive"},
                 names[1]: {"diagnosis_1": "Benign", "diagnosis_3": "Nevus"},
                 names[2]: {"diagnosis": "seborrheic keratosis"},
                 names[3]: {"diagnosis_2": "Benign soft tissue proliferations - Vascular", "diagnosis_3": "Hemangioma"},
                 names[4]: {"diagnosis_3": "Solar or actinic keratosis"},
                 names[5]: {"diagnosis_3": "Squamous cell carcinoma in situ"},
                 names[6]: {"diagnosis_3": "Scar"}}
    fake = FakeIsic(images, diagnoses)
    monkeypatch.setenv("ISIC_API_URL", f"{fake.url}/api/v2")
    monkeypatch.setenv("DERMPIPE_DOWNLOAD_CACHE", str(tmp_path / "cache"))
    yield fake
    fake.close()


def test_isic_collection_to_kaggle_layout_then_nothing(fake_isic, tmp_path):
    from dermpipe.data.merge import merge_dataset

    first = ingest_source("isic:249", tmp_path / "run1")
    assert first["source_kind"] == "isic" and first["n_images"] == 7
    assert fake_isic.search_queries[0]["collections"] == ["249"]
    assert len(fake_isic.search_queries) == 2  # followed the cursor to the second page
    assert first["download_downloaded"] == 7 and len(fake_isic.file_requests) == 7
    truth = pd.read_csv(tmp_path / "run1" / "ISIC_2019_Training_GroundTruth.csv").set_index("image")
    labels = truth.idxmax(axis=1).tolist()
    assert labels == ["MEL", "NV", "BKL", "VASC", "AK", "SCC", "UNK"]
    merged = merge_dataset(tmp_path / "run1")
    assert len(merged.table) == 6 and merged.counts["rows_dropped_bad_label"] == 1  # the scar is UNK: dropped
    assert merged.table["lesion_id"].str.startswith("IL_").all()

    second = ingest_source("isic:249", tmp_path / "run2")
    assert second["download_downloaded"] == 0 and second["download_skipped"] == 7
    assert len(fake_isic.file_requests) == 7  # nothing fetched again
    assert second["manifest_sha256"] == first["manifest_sha256"]


def test_isic_partial_image_resumes_with_range(fake_isic, tmp_path):
    from dermpipe.data.download import cache_dir_for
    from dermpipe.data.sources.isic import download_collection

    cache = cache_dir_for("isic:melanoma")
    download_collection("melanoma", cache)
    assert fake_isic.search_queries[0]["query"] == ["melanoma"]
    name = sorted(fake_isic.images)[3]
    image = cache / "ISIC_2019_Training_Input" / "ISIC_2019_Training_Input" / f"{name}.jpg"
    state = json.loads((cache / ".sync-state.json").read_text())
    checksum = state.pop(f"ISIC_2019_Training_Input/ISIC_2019_Training_Input/{name}.jpg")["checksum"]
    (cache / ".sync-state.json").write_text(json.dumps(state))
    data = image.read_bytes()
    image.unlink()
    image.with_name(image.name + ".part").write_bytes(data[:1000])
    image.with_name(image.name + ".part.json").write_text(json.dumps({"checksum": checksum, "size": len(data)}))
    fake_isic.file_requests.clear()
    stats = download_collection("melanoma", cache)
    assert fake_isic.file_requests == [(name, "bytes=1000-")]
    assert stats.resumed == 1 and stats.bytes_downloaded == len(data) - 1000 and image.read_bytes() == data


def test_isic_errors_name_the_request(fake_isic, tmp_path, monkeypatch):
    from dermpipe.data.sources.isic import isic2019_class, search_params

    assert search_params("249, 251")["collections"] == "249,251"
    assert isic2019_class({"diagnosis_1": "Malignant", "diagnosis_2": "Malignant melanocytic proliferations (Melanoma)",
                           "diagnosis_3": "Melanoma in situ",
                           "diagnosis_4": "Melanoma in situ, associated with a nevus"}) == "MEL"
    monkeypatch.setenv("ISIC_API_URL", f"{fake_isic.url}/wrong")
    with pytest.raises(IngestError, match=r"isic:249: listing .*/wrong/images/search/ failed"):
        ingest_source("isic:249", tmp_path / "raw")
