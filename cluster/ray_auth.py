"""The Ray auth token of a job client: from the environment or a file, never from the command line.

Ray 2.60 clusters started with ``ray start --head`` (and KubeRay clusters with ``authOptions.mode:
token``) refuse job API calls without ``Authorization: Bearer <token>``. We look the token up the way
Ray documents its own lookup (``RAY_AUTH_TOKEN``, then the file ``RAY_AUTH_TOKEN_PATH``, then
``~/.ray/auth_token``) and send the header ourselves, instead of switching this process into Ray's
token mode: that mode is process-global and would also change how a later local ``ray.init`` behaves.
A command-line argument is never accepted, because it would land in shell history and ``ps`` output.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

MODE_VAR = "RAY_AUTH_MODE"
TOKEN_VAR = "RAY_AUTH_TOKEN"
TOKEN_PATH_VAR = "RAY_AUTH_TOKEN_PATH"
HOW_TO = (
    f"set {TOKEN_VAR}, or {TOKEN_PATH_VAR} to a file holding it, or write it to ~/.ray/auth_token "
    f"(on KubeRay: the auth_token key of the cluster's token Secret); {MODE_VAR}=disabled for a cluster without auth"
)


class AuthTokenError(RuntimeError):
    """No usable token; ``str()`` is one line that says where it was looked for."""


def default_token_path(home: Path | None = None) -> Path:
    return (home or Path.home()) / ".ray" / "auth_token"


def find_token(environ: Mapping[str, str] | None = None, home: Path | None = None) -> str | None:
    """The token, or None when the cluster is declared to run without auth (``RAY_AUTH_MODE=disabled``)."""
    env = os.environ if environ is None else environ
    mode = env.get(MODE_VAR, "token").strip().lower() or "token"
    if mode == "disabled":
        return None
    if mode != "token":
        raise AuthTokenError(f"{MODE_VAR}={mode!r}: expected 'token' or 'disabled'")
    token = env.get(TOKEN_VAR, "").strip()
    if token:
        return token
    if env.get(TOKEN_PATH_VAR):
        path = Path(env[TOKEN_PATH_VAR]).expanduser()
        if not path.is_file():
            raise AuthTokenError(f"{TOKEN_PATH_VAR}={path}: no such file")
        return _read(path)
    path = default_token_path(home)
    if path.is_file():
        return _read(path)
    raise AuthTokenError(f"no Ray auth token found: {HOW_TO}")


def _read(path: Path) -> str:
    token = path.read_text().strip()
    if not token:
        raise AuthTokenError(f"{path}: the Ray auth token file is empty")
    return token


def auth_headers(environ: Mapping[str, str] | None = None, home: Path | None = None) -> dict[str, str]:
    token = find_token(environ, home)
    return {"Authorization": f"Bearer {token}"} if token else {}
