"""``s3jedi submit``: run a job on a Ray cluster through its job API, follow it, inspect it, stop it.

Wraps Ray's ``JobSubmissionClient``. The address is always explicit (``--address`` or
``RAY_API_SERVER_ADDRESS``, the dashboard URL): several Ray instances may run on one machine, and
``auto`` discovery could pick someone else's. The auth token comes from the environment or a file
(``cluster.ray_auth``). ``--follow`` streams the job's logs and exits 0 only if the job succeeded, so a
script or CI step can chain ``s3jedi submit datagen ... --follow && s3jedi submit train ...``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import time
from collections.abc import Iterator
from typing import Annotated
from urllib.parse import urlparse

import typer
from rich.console import Console
from rich.table import Table

from cluster.jobs import KINDS, JobKind, JobRequest, build_request
from cluster.ray_auth import AuthTokenError, auth_headers
from core.cli_options import USER_ERRORS, ConfigOpt, SetOpt, fail
from core.logs import get_logger

log = get_logger("cluster.submit")
TERMINAL_WAIT_S = 30.0

app = typer.Typer(
    help=(
        "Run jobs on a Ray cluster (the job API at http://HEAD:8265): submit, follow, status, logs, stop. "
        "The cluster's auth token is read from RAY_AUTH_TOKEN, the file in RAY_AUTH_TOKEN_PATH, or "
        "~/.ray/auth_token (RAY_AUTH_MODE=disabled for a cluster without auth); it is never an option."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

AddressOpt = Annotated[
    str,
    typer.Option(
        "--address",
        "-a",
        envvar="RAY_API_SERVER_ADDRESS",
        help="the cluster's dashboard URL, e.g. http://127.0.0.1:8265 (env RAY_API_SERVER_ADDRESS)",
    ),
]
JobIdArg = Annotated[str, typer.Argument(help="submission id (printed by submit; `s3jedi submit list`)")]
FollowOpt = Annotated[bool, typer.Option("--follow", "-f", help="stream the logs until the job ends")]


def check_address(address: str) -> str:
    parsed = urlparse(address)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(
            f"--address: expected the dashboard URL of the head, e.g. http://HEAD:8265 (got {address!r}); "
            "'auto' and ray:// addresses are not used, so a job never lands on the wrong cluster"
        )
    return address.rstrip("/")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


@contextlib.contextmanager
def _talking_to(address: str) -> Iterator[None]:
    """Turn every way a call to the job API can fail into one line naming the address."""
    import requests
    from ray.exceptions import AuthenticationError

    try:
        yield
    except AuthenticationError as exc:
        raise fail(f"{address}: {_one_line(exc)} (is the token the cluster's? see `s3jedi submit --help`)") from None
    except (ConnectionError, requests.RequestException) as exc:
        raise fail(f"cannot reach the Ray job API at {address}: {_one_line(exc)}") from None
    except RuntimeError as exc:
        raise fail(f"{address}: {_one_line(exc)}") from None


def connect(address: str):
    """A ``JobSubmissionClient`` for ``address`` that sends the auth token itself."""
    from ray.job_submission import JobSubmissionClient

    try:
        url = check_address(address)
        headers = auth_headers()
    except (ValueError, AuthTokenError) as exc:
        raise fail(str(exc)) from None
    with _talking_to(url):
        return JobSubmissionClient(url, headers=headers)


def submit(client, request: JobRequest) -> str:
    # Packaging the working dir, Ray logs each file it leaves out (and that .git/.venv are left out by
    # default); our excludes already say so, and the lines would bury the job's own output.
    logging.getLogger("ray").setLevel(logging.WARNING)
    logging.getLogger("ray._private.runtime_env.working_dir").setLevel(logging.ERROR)
    return client.submit_job(
        entrypoint=request.entrypoint,
        submission_id=request.submission_id,
        runtime_env=request.runtime_env,
        metadata=request.metadata,
    )


def stream_logs(client, job_id: str) -> None:
    async def tail() -> None:
        async for chunk in client.tail_job_logs(job_id):
            sys.stdout.write(chunk)
            sys.stdout.flush()

    asyncio.run(tail())


def wait_terminal(client, job_id: str, timeout_s: float = TERMINAL_WAIT_S):
    """The log stream closes when the driver exits; the job's final status is recorded just after."""
    deadline = time.monotonic() + timeout_s
    status = client.get_job_status(job_id)
    while not status.is_terminal() and time.monotonic() < deadline:
        time.sleep(0.5)
        status = client.get_job_status(job_id)
    return status


def follow(client, address: str, job_id: str) -> None:
    """Stream the logs, then exit 0 if the job succeeded and 1 with its error otherwise."""
    try:
        with _talking_to(address):
            stream_logs(client, job_id)
            status = wait_terminal(client, job_id)
            info = client.get_job_info(job_id)
    except KeyboardInterrupt:
        typer.echo(f"stopped following; the job keeps running (s3jedi submit stop {job_id})", err=True)
        raise typer.Exit(130) from None
    if status.value == "SUCCEEDED":
        typer.secho(f"job {job_id} succeeded", fg=typer.colors.GREEN, err=True)
        return
    raise fail(f"job {job_id} {status.value.lower()}: {failure_reason(info.message)}", code=1)


def failure_reason(message: str | None) -> str:
    """One line from Ray's job message: what happened, plus the driver's last log line (our apps end
    with ``error: <field>: <why>``), which Ray appends to the message after the exit code."""
    lines = [line.strip() for line in (message or "").splitlines() if line.strip()]
    if not lines:
        return "no message from the cluster"
    reason = lines[0].split(", last available logs")[0].rstrip(":")
    return f"{reason}; last log line: {lines[-1]}" if len(lines) > 1 else reason


def _register(kind: JobKind) -> None:
    @app.command(kind.name, help=f"{kind.help} Prints the submission id; arguments after -- go to the job.")
    def _submit(
        address: AddressOpt,
        job_args: Annotated[list[str] | None, typer.Argument(help="extra job arguments, after --")] = None,
        config: ConfigOpt = "tiny",
        set_: SetOpt = None,
        out: Annotated[
            str | None,
            typer.Option(
                "--out", "-o", help="output dir or URI on the cluster (default <cluster.storage root>/<profile>)"
            ),
        ] = None,
        follow_: FollowOpt = False,
        submission_id: Annotated[
            str | None, typer.Option(help="choose the id (default s3jedi-<job>-<time>-<hex>)")
        ] = None,
    ) -> None:
        try:
            request = build_request(kind.name, config, set_, out, job_args, submission_id)
        except USER_ERRORS as exc:
            raise fail(str(exc)) from None
        client = connect(address)
        where = request.runtime_env.get("working_dir") or request.runtime_env.get("image_uri")
        log.info("submitting", job=kind.name, entrypoint=request.entrypoint, code=where)
        with _talking_to(address):
            job_id = submit(client, request)
        typer.echo(job_id)
        if follow_:
            follow(client, address, job_id)
        else:
            typer.echo(f"follow it: s3jedi submit logs {job_id} --follow --address {address}", err=True)


for _kind in KINDS.values():
    _register(_kind)


@app.command()
def status(job_id: JobIdArg, address: AddressOpt) -> None:
    """Status, message, entrypoint and provenance of one job, as JSON."""
    client = connect(address)
    with _talking_to(address):
        info = client.get_job_info(job_id)
    Console().print_json(
        json.dumps(
            {
                "submission_id": info.submission_id,
                "status": info.status.value,
                "message": info.message,
                "entrypoint": info.entrypoint,
                "metadata": info.metadata,
                "start_time": info.start_time,
                "end_time": info.end_time,
            }
        )
    )


@app.command()
def logs(job_id: JobIdArg, address: AddressOpt, follow_: FollowOpt = False) -> None:
    """Print a job's logs so far; with --follow, stream them and exit like `submit --follow`."""
    client = connect(address)
    if follow_:
        follow(client, address, job_id)
        return
    with _talking_to(address):
        typer.echo(client.get_job_logs(job_id), nl=False)


@app.command()
def stop(job_id: JobIdArg, address: AddressOpt) -> None:
    """Ask the cluster to stop a job (its driver and everything it started)."""
    client = connect(address)
    with _talking_to(address):
        stopped = client.stop_job(job_id)
        state = client.get_job_status(job_id).value
    typer.echo(f"job {job_id}: {'stop requested' if stopped else 'already finished'} ({state})")


@app.command("list")
def list_cmd(address: AddressOpt) -> None:
    """Jobs submitted with s3jedi on this cluster, newest first."""
    client = connect(address)
    with _talking_to(address):
        jobs = [j for j in client.list_jobs() if (j.metadata or {}).get("s3jedi.job")]
    table = Table("submission id", "job", "status", "profile", "config hash", "out")
    for j in sorted(jobs, key=lambda j: j.start_time or 0, reverse=True):
        m = j.metadata
        table.add_row(
            j.submission_id,
            m["s3jedi.job"],
            j.status.value,
            m.get("s3jedi.profile", ""),
            m.get("s3jedi.config_hash", ""),
            m.get("s3jedi.out", ""),
        )
    Console().print(table)
