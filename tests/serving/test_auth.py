"""Bearer tokens for `dermpipe serve` (dermpipe.serving.auth): the token file and variable, constant-time matching,
per-token rate limits, the loopback rule, and the feedback and predict routes through FastAPI's TestClient (no model
is loaded: the refusals come before any model is needed; feedback checks against a real PredictionLog's log)."""

import logging

import pytest
from fastapi.testclient import TestClient
from logged_predictions import write_log
from tls_files import self_signed

from dermpipe.serving import auth
from dermpipe.serving.app import create_app
from dermpipe.serving.auth import Authenticator, RateLimiter, SecuritySettingsError, load_tokens, parse_tokens
from dermpipe.serving.labels import read_labels
from dermpipe.serving.settings import Settings

MODEL = "derm"
TOKEN_A = "a" * 8 + "Zk3-_x9QpLm2"  # 20 characters of the bearer syntax
TOKEN_B = "B" * 8 + "r7/u+Yw4Tn1e=="


def label(rid: str) -> dict:
    return {"request_id": rid, "diagnosis": "MEL", "source": "biopsy", "date": "2026-11-30"}


@pytest.mark.parametrize(("text", "message"), [
    ("clinic-a", "entry 1: expected name:token"),
    (f"clinic a:{TOKEN_A}", "name 'clinic a'"),
    (f"a:{TOKEN_A}\na:{TOKEN_B}", "entry 2: name 'a' appears twice"),
    ("a:short-token", "has 11 characters; use 16 or more"),
    ("a:has space inside the token", "is not a bearer token"),
    (f"a:{TOKEN_A}\nb:{TOKEN_A}", "entry 2: the token of 'b' is also another name's"),
    ("# only a comment\n\n", "no name:token entry"),
])
def test_a_bad_token_file_names_the_entry_and_never_the_token(text, message):
    with pytest.raises(SecuritySettingsError, match=message) as caught:
        parse_tokens(text, "tokens.txt")
    assert str(caught.value).startswith("tokens.txt: ")
    assert TOKEN_A not in str(caught.value) and TOKEN_B not in str(caught.value)


def test_tokens_come_from_the_file_or_else_the_variable_never_both(tmp_path):
    path = tmp_path / "tokens.txt"
    path.write_text(f"# issued 2026-12-01\nclinic-a:{TOKEN_A}\n\n  clinic-b : {TOKEN_B}  \n")
    assert load_tokens(str(path), {}) == {"clinic-a": TOKEN_A, "clinic-b": TOKEN_B}
    assert load_tokens("", {auth.TOKENS_ENV: f"ci:{TOKEN_A},ops:{TOKEN_B}"}) == {"ci": TOKEN_A, "ops": TOKEN_B}
    assert load_tokens("", {}) == {}
    with pytest.raises(SecuritySettingsError, match="both --auth-token-file"):
        load_tokens(str(path), {auth.TOKENS_ENV: f"ci:{TOKEN_A}"})
    with pytest.raises(SecuritySettingsError, match="missing.txt: cannot be read"):
        load_tokens(str(tmp_path / "missing.txt"), {})


def test_every_token_is_compared_even_after_a_match(monkeypatch):
    compared = []
    real = auth.hmac.compare_digest
    monkeypatch.setattr(auth.hmac, "compare_digest", lambda a, b: compared.append(b) or real(a, b))
    gate = Authenticator({"a": TOKEN_A, "b": TOKEN_B}, 0)
    assert gate.identify(TOKEN_A) == "a" and gate.identify(TOKEN_B) == "b" and gate.identify(TOKEN_A[:-1]) is None
    assert len(compared) == 6  # two tokens, three lookups: no early exit on the first match


def test_the_rate_limit_is_a_bucket_per_token():
    now = [0.0]
    limiter = RateLimiter(6, clock=lambda: now[0])  # 6 a minute: one every 10 s, bursts of 6
    assert [limiter.take("a") for _ in range(6)] == [0.0] * 6
    assert limiter.take("a") == pytest.approx(10.0)
    assert limiter.take("b") == 0.0  # another token has its own bucket
    now[0] = 10.0
    assert limiter.take("a") == 0.0 and limiter.take("a") == pytest.approx(10.0)
    assert RateLimiter(0).take("a") == 0.0  # 0: no limit


@pytest.mark.parametrize(("host", "loopback"), [("127.0.0.1", True), ("::1", True), ("[::1]", True),
                                                 ("localhost", True), ("0.0.0.0", False), ("10.1.2.3", False),
                                                 ("::", False), ("serve.internal", False)])
def test_only_loopback_addresses_count_as_loopback(host, loopback):
    assert auth.is_loopback(host) is loopback


@pytest.fixture(autouse=True)
def _no_tokens_in_the_environment(monkeypatch):
    monkeypatch.delenv(auth.TOKENS_ENV, raising=False)


def _app(tmp_path, **settings):
    log_root = tmp_path / "predictions"
    write_log(log_root, MODEL, ["aa", "bb", "cc", "dd"])
    return create_app(Settings(registry_root=str(tmp_path / "registry"), model_name=MODEL, log_root=str(log_root),
                               **settings)), str(log_root)


@pytest.fixture()
def secured(tmp_path):
    tokens = tmp_path / "tokens.txt"
    tokens.write_text(f"clinic-a:{TOKEN_A}\nclinic-b:{TOKEN_B}\n")
    app, log_root = _app(tmp_path, auth_token_file=str(tokens), auth_rate_per_minute=3)
    return TestClient(app), log_root


@pytest.mark.parametrize("path", ["/v1/feedback", f"/v2/models/{MODEL}/feedback"])
def test_feedback_needs_a_token_401_wrong_403_right_200_with_its_name_stored(secured, path):
    http, log_root = secured
    missing = http.post(path, json={"labels": [label("aa")]})
    assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
    assert "needs a bearer token" in missing.json()["error"]
    basic = http.post(path, json={"labels": [label("aa")]}, headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert basic.status_code == 401 and "not 'Bearer <token>'" in basic.json()["error"]
    wrong = http.post(path, json={"labels": [label("aa")]}, headers={"Authorization": f"Bearer {TOKEN_A}x"})
    assert wrong.status_code == 403 and "not one of the server's tokens" in wrong.json()["error"]
    assert read_labels(log_root, MODEL).empty  # nothing stored from the refused ones
    metrics = http.get("/metrics").text  # refusals are counted, for an alert on a token being guessed
    assert 'dermpipe_rejected_total{status="401"} 2.0' in metrics
    assert 'dermpipe_rejected_total{status="403"} 1.0' in metrics
    right = http.post(path, json={"labels": [label("aa")]}, headers={"Authorization": f"Bearer {TOKEN_B}"})
    assert right.status_code == 200 and right.json()["accepted"] == 1, right.text
    stored = read_labels(log_root, MODEL).iloc[0]
    assert (stored["request_id"], stored["submitted_by"], stored["auth"], stored["client"]) == (
        "aa", "clinic-b", "bearer", "testclient")
    assert stored["received_at"].endswith("Z")
    assert TOKEN_B not in open(http.app.app.state.service.settings.log_root + f"/{MODEL}/labels/"
                               + right.json()["submission"]).read()


def test_the_openapi_document_declares_bearer_tokens_on_the_feedback_routes(secured):
    http, _ = secured
    document = http.get("/openapi.json").json()
    scheme = document["components"]["securitySchemes"]["bearer"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer") and "--auth-token-file" in scheme["description"]
    secured_routes = sorted(path for path, methods in document["paths"].items() for op in methods.values()
                            if op.get("security"))
    assert secured_routes == ["/v1/feedback", "/v2/models/{name}/feedback"]


def test_a_token_over_its_rate_gets_429_with_retry_after_and_others_go_on(secured):
    http, _ = secured
    headers_a, headers_b = {"Authorization": f"Bearer {TOKEN_A}"}, {"Authorization": f"Bearer {TOKEN_B}"}
    answers = [http.post("/v1/feedback", json={"labels": [label(r)]}, headers=headers_a).status_code
               for r in ("aa", "bb", "cc", "dd")]
    assert answers == [200, 200, 200, 429]
    limited = http.post("/v1/feedback", json={"labels": [label("dd")]}, headers=headers_a)
    assert limited.status_code == 429 and 1 <= int(limited.headers["retry-after"]) <= 20
    assert "over its rate of 3 requests a minute" in limited.json()["error"]
    assert http.post("/v1/feedback", json={"labels": [label("dd")]}, headers=headers_b).status_code == 200


def test_an_edited_token_file_issues_and_revokes_without_a_restart(tmp_path, caplog):
    import os

    tokens = tmp_path / "tokens.txt"
    tokens.write_text(f"clinic-a:{TOKEN_A}\n")
    app, _ = _app(tmp_path, auth_token_file=str(tokens))
    http = TestClient(app)

    def rewrite(text: str) -> None:
        tokens.write_text(text)
        stamp = tokens.stat().st_mtime_ns + 1_000_000_000  # a coarse file-system clock must not hide the edit
        os.utime(tokens, ns=(stamp, stamp))

    def status(token: str) -> int:
        return http.post("/v1/feedback", json={"labels": [label("aa")]}, headers={"Authorization": f"Bearer {token}"},
                         ).status_code

    assert (status(TOKEN_A), status(TOKEN_B)) == (200, 403)
    with caplog.at_level(logging.WARNING, logger="dermpipe.serve"):
        rewrite(f"clinic-b:{TOKEN_B}\n")
        assert (status(TOKEN_A), status(TOKEN_B)) == (403, 200)  # clinic-a revoked, clinic-b issued
        rewrite("clinic-b:short\n")  # a broken edit keeps the tokens in force, and says so
        assert status(TOKEN_B) == 200
    lines = [r.getMessage() for r in caplog.records]
    assert any("re-read: 1 tokens; added clinic-b; revoked clinic-a" in line for line in lines)
    assert any("changed but cannot be used" in line and "the 1 tokens read before stay in force" in line
               for line in lines)
    assert all(TOKEN_A not in line and TOKEN_B not in line for line in lines)


def test_auth_predict_guards_predict_infer_explain_and_upload_but_not_probes(tmp_path):
    tokens = tmp_path / "tokens.txt"
    tokens.write_text(f"clinic-a:{TOKEN_A}\n")
    app, _ = _app(tmp_path, auth_token_file=str(tokens), auth_predict=True)
    http = TestClient(app)
    for path in (f"/v1/models/{MODEL}:predict", f"/v1/models/{MODEL}/versions/1:predict",
                 f"/v1/models/{MODEL}:explain", f"/v2/models/{MODEL}/infer", "/predict"):
        assert http.post(path, json={"instances": []}).status_code == 401, path
        assert http.post(path, json={}, headers={"Authorization": "Bearer " + "x" * 20}).status_code == 403, path
    # a right token gets past the door: the refusal is then the model's (none loaded here), not the token's
    past = http.post(f"/v1/models/{MODEL}:predict", json={"instances": [{"b64": ""}]},
                     headers={"Authorization": f"Bearer {TOKEN_A}"})
    assert past.status_code not in (401, 403, 429)
    assert http.get("/healthz").status_code == 200 and http.get("/v2/health/live").status_code == 200


def test_predict_stays_open_without_the_option(tmp_path):
    tokens = tmp_path / "tokens.txt"
    tokens.write_text(f"clinic-a:{TOKEN_A}\n")
    app, _ = _app(tmp_path, auth_token_file=str(tokens))
    answer = TestClient(app).post(f"/v1/models/{MODEL}:predict", json={"instances": [{"b64": ""}]})
    assert answer.status_code not in (401, 403)


def test_no_tokens_beyond_loopback_refuses_feedback_and_says_so_at_start(tmp_path, caplog):
    app, log_root = _app(tmp_path, host="0.0.0.0")
    with caplog.at_level(logging.WARNING, logger="dermpipe.serve"), TestClient(app) as http:
        refused = http.post("/v1/feedback", json={"labels": [label("aa")]})
    assert refused.status_code == 403 and "listens on 0.0.0.0" in refused.json()["error"]
    assert "--auth-token-file" in refused.json()["error"] and read_labels(log_root, MODEL).empty
    assert any("feedback is refused" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


def test_no_tokens_on_loopback_takes_feedback_and_records_the_address(tmp_path):
    app, log_root = _app(tmp_path)
    assert TestClient(app).post("/v1/feedback", json={"labels": [label("aa")]}).status_code == 200
    stored = read_labels(log_root, MODEL).iloc[0]
    assert (stored["submitted_by"], stored["auth"], stored["client"]) == ("", "none", "testclient")


@pytest.mark.parametrize(("settings", "message"), [
    ({"auth_predict": True}, "--auth-predict needs tokens"),
    ({"tls_cert": "cert.pem"}, "--tls-cert and --tls-key go together"),
    ({"tls_cert": "/nonexistent/cert.pem", "tls_key": "/nonexistent/key.pem"}, "--tls-cert /nonexistent/cert.pem: no"),
])
def test_settings_that_cannot_work_refuse_to_start(tmp_path, settings, message):
    with pytest.raises(SecuritySettingsError, match=message):
        _app(tmp_path, **settings)


def test_a_tls_pair_that_cannot_serve_stops_the_start_with_its_reason(tmp_path):
    cert, key = self_signed(tmp_path)
    other_cert, _ = self_signed(tmp_path, prefix="other-")
    _, locked_key = self_signed(tmp_path, passphrase=b"s3cret", prefix="locked-")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    _app(tmp_path, tls_cert=str(cert), tls_key=str(key))  # the right pair starts
    for tls_cert, tls_key, message in ((other_cert, key, "not a PEM certificate chain and its private key"),
                                       (garbage, key, "not a PEM certificate chain"),
                                       (cert, locked_key, "is encrypted; serve needs an unencrypted PEM key")):
        with pytest.raises(SecuritySettingsError, match=message):
            _app(tmp_path, tls_cert=str(tls_cert), tls_key=str(tls_key))


def test_dermpipe_serve_exits_2_naming_the_bad_entry_before_listening(tmp_path):
    from typer.testing import CliRunner

    from dermpipe.cli.main import app

    tokens = tmp_path / "tokens.txt"
    tokens.write_text(f"clinic-a:{TOKEN_A}\nclinic-b:{TOKEN_A[:10]}\n")
    result = CliRunner().invoke(app, ["serve", "--registry-root", str(tmp_path), "--auth-token-file", str(tokens),
                                      "--log-root", "none"])
    assert result.exit_code == 2
    assert f"{tokens}: entry 2: the token of 'clinic-b' has 10 characters" in result.output
    assert TOKEN_A[:10] not in result.output.replace(str(tmp_path), "")
