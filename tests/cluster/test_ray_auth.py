"""Where a job client finds the Ray auth token, and the one-line errors when it cannot."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cluster.cli import app
from cluster.ray_auth import AuthTokenError, auth_headers, find_token


def test_token_from_the_environment_wins(tmp_path):
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("from-default-file")
    env = {"RAY_AUTH_TOKEN": " from-env \n", "RAY_AUTH_TOKEN_PATH": str(tmp_path / "other")}
    assert find_token(env, home=tmp_path) == "from-env"
    assert auth_headers(env, home=tmp_path) == {"Authorization": "Bearer from-env"}


def test_token_from_the_path_variable_then_the_default_file(tmp_path):
    path = tmp_path / "token"
    path.write_text("abc123\n")
    assert find_token({"RAY_AUTH_TOKEN_PATH": str(path)}, home=tmp_path) == "abc123"
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("default")
    assert find_token({}, home=tmp_path) == "default"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "no Ray auth token found: set RAY_AUTH_TOKEN, or RAY_AUTH_TOKEN_PATH"),
        ({"RAY_AUTH_TOKEN_PATH": "/nonexistent/token"}, "RAY_AUTH_TOKEN_PATH=/nonexistent/token: no such file"),
        ({"RAY_AUTH_MODE": "tokn"}, "RAY_AUTH_MODE='tokn': expected 'token' or 'disabled'"),
    ],
)
def test_missing_or_bad_token_sources_explain_themselves(tmp_path, env, message):
    with pytest.raises(AuthTokenError) as err:
        find_token(env, home=tmp_path)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_an_empty_token_file_is_an_error_not_an_empty_header(tmp_path):
    (tmp_path / "token").write_text("  \n")
    with pytest.raises(AuthTokenError, match="token file is empty"):
        find_token({"RAY_AUTH_TOKEN_PATH": str(tmp_path / "token")}, home=tmp_path)


def test_auth_disabled_sends_no_header(tmp_path):
    assert auth_headers({"RAY_AUTH_MODE": "disabled"}, home=tmp_path) == {}


def test_submit_without_a_token_fails_in_one_line_before_connecting(tmp_path):
    env = {"HOME": str(tmp_path), "RAY_AUTH_TOKEN": None, "RAY_AUTH_TOKEN_PATH": None, "RAY_AUTH_MODE": None}
    result = CliRunner().invoke(
        app, ["submit", "datagen", "--address", "http://127.0.0.1:9", "--out", str(tmp_path / "s3")], env=env
    )
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no Ray auth token found"), result.output


def test_the_token_is_never_a_command_line_option():
    result = CliRunner().invoke(app, ["submit", "datagen", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "token" not in result.output.lower()
