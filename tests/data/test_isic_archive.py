"""isic: through isic-cli against a fake ISIC Archive on loopback (tests/isic_archive.py): the login `isic user login`
stored (read, refreshed, overridden by ISIC_TOKEN), isic-cli's retrying session with a bounded wait, the count and
size before downloading, each image's licence in the metadata CSV, and resuming a file whose stream was cut."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from humanize import naturalsize
from isic_archive import FakeArchive, isolate_isic_login, token_file, write_isic_login

from dermpipe.data.ingest import IngestError, ingest_source
from dermpipe.data.sources.spec import check_source

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"
IMAGES = "ISIC_2019_Training_Input/ISIC_2019_Training_Input"


@pytest.fixture()
def archive(isic_sample, tmp_path, monkeypatch):
    """Seven real sample images behind a fake Archive; this process's login folder is tmp_path/xdg (empty)."""
    files = sorted((isic_sample / IMAGES).glob("*.jpg"))[:7]
    images = {f"ISIC_{9100000 + i}": p.read_bytes() for i, p in enumerate(files)}
    diagnoses = {name: {"diagnosis_1": "Benign", "diagnosis_3": "Nevus"} for name in images}
    fake = FakeArchive(images, diagnoses)
    isolate_isic_login(monkeypatch, tmp_path / "xdg")
    monkeypatch.setenv("ISIC_API_URL", f"{fake.url}/api/v2")
    monkeypatch.setenv("DERMPIPE_DOWNLOAD_CACHE", str(tmp_path / "cache"))
    yield fake
    fake.close()


def _api_authorizations(fake: FakeArchive) -> set[str | None]:
    return {seen.headers.get("Authorization") for seen in fake.requests_to("/api/v2/")}


def test_ingest_rides_out_503s_with_the_stored_login_and_keeps_each_licence(archive, tmp_path):
    """Issue #27's done-when: a fresh process, as a user runs it, with the token a fake `isic user login` stored."""
    xdg = tmp_path / "login-home"
    stored = write_isic_login(xdg, "stored-access-token")
    page = archive.fail("/api/v2/images/search/?cursor=4")  # the second listing page, once
    names = sorted(archive.images)
    image = archive.fail(f"/files/{names[2]}.jpg")  # one image file, once
    script = ("import json, sys; from pathlib import Path; from dermpipe.data.ingest import ingest_source; "
              "print(json.dumps(ingest_source('isic:249', Path(sys.argv[1]))))")
    env = {**os.environ, "XDG_DATA_HOME": str(xdg)}
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "raw")], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])

    assert summary["n_images"] == 7 and summary["download_downloaded"] == 7
    assert len(page.hits) == 1 and len(image.hits) == 1 and page.times == image.times == 0
    listed = [s for s in archive.requests_to("/api/v2/images/search/") if s.query.get("cursor") == ["4"]]
    assert len(listed) == 2  # the 503, then the page again
    assert len([s for s in archive.requests_to("/files/") if names[2] in s.path]) == 2
    assert _api_authorizations(archive) == {"Bearer stored-access-token"}  # count, size, every page
    assert {s.headers.get("Authorization") for s in archive.requests_to("/files/")} == {None}  # signed URLs only
    assert json.loads(stored.read_text())["access_token"] == "stored-access-token"  # not expired: not refreshed

    metadata = pd.read_csv(tmp_path / "raw" / "ISIC_2019_Training_Metadata.csv").set_index("image")
    assert list(metadata.index) == names
    for name in names:
        assert (metadata.loc[name, "copyright_license"], metadata.loc[name, "attribution"]) == archive.licence(name)
    assert set(metadata["copyright_license"]) == {"CC-0", "CC-BY", "CC-BY-NC"}
    for name in names:
        assert (tmp_path / "raw" / IMAGES / f"{name}.jpg").read_bytes() == archive.images[name]


def test_an_expired_login_is_refreshed_and_saved_as_isic_cli_does(archive, tmp_path):
    from dermpipe.data.sources.isic_client import credentials

    stored = write_isic_login(tmp_path / "xdg", "old-token", expires_in=-10)
    creds = credentials()
    assert creds.headers == {"Authorization": "Bearer refreshed-1"}
    assert str(stored) in creds.source and "isic user login" in creds.source
    (refresh,) = archive.tokens
    assert refresh["form"]["grant_type"] == ["refresh_token"] and refresh["form"]["refresh_token"] == ["refresh-1"]
    saved = json.loads(stored.read_text())
    assert saved["access_token"] == "refreshed-1" and saved["refresh_token"] == "refresh-2"
    assert "refreshed-1" not in repr(creds)  # the token never reaches a log line through the repr


def test_the_preflight_names_a_stored_login_other_users_can_read(archive, tmp_path, capsys):
    stored = write_isic_login(tmp_path / "xdg", "stored-access-token")
    stored.chmod(0o644)  # girder-cli-oauth-client writes it with the umask
    check_source("isic:249", local=True)
    assert capsys.readouterr().err.strip().endswith(
        f"credentials: the `isic user login` token ({stored}); readable by other users (mode 644): run "
        f"`chmod 600 {stored}`")
    stored.chmod(0o600)
    check_source("isic:249", local=True)
    assert capsys.readouterr().err.strip().endswith(f"credentials: the `isic user login` token ({stored})")
    assert _api_authorizations(archive) == {"Bearer stored-access-token"}


def test_isic_token_overrides_the_stored_login(archive, tmp_path, monkeypatch, capsys):
    write_isic_login(tmp_path / "xdg", "stored-access-token")
    monkeypatch.setenv("ISIC_TOKEN", "env-token")
    check_source("isic:249", local=True)
    line = capsys.readouterr().err
    assert "isic:249: 7 images" in line and "credentials: ISIC_TOKEN (environment)" in line
    assert "env-token" not in line
    assert _api_authorizations(archive) == {"Bearer env-token"}


def test_preflight_says_the_count_the_size_and_the_credentials(archive, tmp_path, capsys):
    check_source("isic:249", local=True)
    total = naturalsize(sum(len(v) for v in archive.images.values()))  # as isic-cli shows it
    line = capsys.readouterr().err.strip()
    assert line.startswith(f"isic:249: 7 images, {total} on the ISIC Archive ({archive.url}/api/v2/)")
    assert line.endswith(f"credentials: none: public images only (no ISIC_TOKEN, no `isic user login` token at "
                         f"{token_file(tmp_path / 'xdg')})")
    assert _api_authorizations(archive) == {None}

    assert [s.path for s in archive.seen] == ["/api/v2/collections/249/", "/api/v2/images/search/",
                                              "/api/v2/images/search/size/"]

    with pytest.raises(IngestError, match=r"isic:249,250: collection 250 does not exist or these credentials may not "
                                          r"see it \(credentials: none: public images only"):
        check_source("isic:249,250", local=True)  # a typo beside a real id: refused as isic-cli refuses it
    archive.images.clear()  # a search that finds nothing: refused before anything starts
    with pytest.raises(IngestError, match=r"isic:melanoma: the ISIC Archive finds no images for it \(credentials: "):
        check_source("isic:melanoma", local=True)

    archive.seen.clear()  # a cluster run: its own credentials and network, nothing asked from here
    check_source("isic:249", local=False)
    assert archive.seen == []


def test_a_revoked_login_says_to_log_in_again(archive, tmp_path):
    stored = write_isic_login(tmp_path / "xdg", "old-token", expires_in=-10)
    archive.refuse_refresh = True
    with pytest.raises(IngestError, match=rf"`isic user login` stored in {stored} could not be used or refreshed "
                                          r"\(OAuthError: invalid_grant\); run `isic user login` again"):
        ingest_source("isic:249", tmp_path / "raw")


def test_retry_after_past_the_wait_budget_fails_at_once_naming_the_request(archive, tmp_path):
    archive.fail("/api/v2/images/search/?cursor=4", status=429, times=50, retry_after="3600")
    with pytest.raises(IngestError) as raised:
        ingest_source("isic:249", tmp_path / "raw")
    message = str(raised.value)
    assert message.startswith(f"isic:249: listing the images: GET {archive.url}/api/v2/images/search/?cursor=4")
    assert "answered 429 1 time(s); the next retry would wait 3600 s more after 0 s of waiting, past the 600 s " \
           "budget (DERMPIPE_ISIC_MAX_WAIT_S)" in message
    assert len(archive.requests_to("/files/")) == 0


def test_an_outage_longer_than_the_budget_gives_up_after_the_budget(archive, tmp_path, monkeypatch):
    """isic-cli's backoff (5 s factor: 0 s, then 10 s) against a budget of 5 s: two tries, no sleep, then the error."""
    monkeypatch.setenv("DERMPIPE_ISIC_MAX_WAIT_S", "5")
    names = sorted(archive.images)
    archive.fail(f"/files/{names[0]}.jpg", times=50)
    with pytest.raises(IngestError) as raised:
        ingest_source("isic:249", tmp_path / "raw")
    message = str(raised.value)
    assert message.startswith(f"isic:249: downloading {names[0]}.jpg: GET {archive.url}/files/{names[0]}.jpg "
                              "answered 503 2 time(s); the next retry would wait 10 s more")
    assert "Signature" not in message and "s3cr3t" not in message  # a signed URL's signature is a credential
    assert "run the ingest again to resume" in message


def test_a_cut_stream_resumes_from_the_bytes_written(archive, tmp_path, capsys):
    from dermpipe.data.download import cache_dir_for
    from dermpipe.data.sources.isic import download_collection

    name = sorted(archive.images)[1]
    largest = max((SHARED_DATA / "isic2020-sample" / "images").glob("*.jpg"), key=lambda p: p.stat().st_size)
    archive.images[name] = data = largest.read_bytes()  # a real image of more than one block
    cut = archive.fail(f"/files/{name}.jpg", cut=True)  # half the file, then the connection drops
    stats, figures = download_collection("249", cache_dir_for("isic:249"), quiet=False)
    said = capsys.readouterr().err
    assert said.startswith(f"isic:249: 7 images, {naturalsize(sum(map(len, archive.images.values())))} on the ISIC "
                           f"Archive ({archive.url}/api/v2/); credentials: none: public images only")
    assert "isic:249: 7 images" in said.splitlines()[-1]  # the progress bar's label
    ranges = [s.headers.get("Range") for s in archive.requests_to(f"/files/{name}.jpg")]
    assert len(cut.hits) == 1 and len(ranges) == 2 and ranges[0] is None
    assert 0 < int(ranges[1].removeprefix("bytes=").removesuffix("-")) <= len(data) // 2  # on from what was written
    assert (cache_dir_for("isic:249") / IMAGES / f"{name}.jpg").read_bytes() == data
    assert stats.downloaded == 7 and stats.bytes_downloaded == sum(len(v) for v in archive.images.values())
    assert figures == {"download_archive_images": 7, "download_archive_bytes": stats.bytes_downloaded,
                       "download_without_licence": 0}


@pytest.mark.parametrize(("budget", "sleeps", "answers"), [(600, [10, 20, 40, 80, 120, 120, 120], 9),
                                                           (30, [10, 20], 4)])
def test_the_budget_bounds_isic_clis_backoff(budget, sleeps, answers, monkeypatch):
    """isic-cli's schedule (backoff factor 5, urllib3's 120 s cap) is kept until one more wait would pass the budget."""
    import time

    from urllib3 import HTTPResponse

    from dermpipe.data.sources.isic_client import WaitBudgetSpent, retry_strategy

    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    retry = retry_strategy(budget)
    with pytest.raises(WaitBudgetSpent) as raised:
        for _ in range(20):
            retry = retry.increment("GET", "/api/v2/images/search/", response=HTTPResponse(status=503))
            retry.sleep(HTTPResponse(status=503))
    assert slept == sleeps and sum(slept) <= budget
    assert raised.value.message.startswith(f"answered 503 {answers} time(s); the next retry would wait")


def test_an_unreachable_archive_is_named_with_the_connection_error(archive, tmp_path, monkeypatch):
    import socket

    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("ISIC_API_URL", f"http://127.0.0.1:{port}/api/v2/")
    monkeypatch.setenv("DERMPIPE_ISIC_MAX_WAIT_S", "0")  # isic-cli's first retry is immediate, the second waits 10 s
    with pytest.raises(IngestError) as raised:
        ingest_source("isic:249", tmp_path / "raw")
    message = str(raised.value)
    assert message.startswith(f"isic:249: counting the images: GET http://127.0.0.1:{port}/api/v2/images/search/"
                              "?query=&collections=249&limit=1 failed (NewConnectionError: ")
    assert "Connection refused) 2 time(s); the next retry would wait 10 s more after 0 s of waiting" in message


@pytest.mark.parametrize("value", ["ten", "-5", "nan"])
def test_a_bad_wait_budget_is_refused_by_name(archive, monkeypatch, value):
    monkeypatch.setenv("DERMPIPE_ISIC_MAX_WAIT_S", value)
    with pytest.raises(IngestError, match=rf"DERMPIPE_ISIC_MAX_WAIT_S='{value}': expected the seconds one ISIC "
                                          "Archive request may spend waiting between retries, e.g. 600"):
        check_source("isic:249", local=True)
