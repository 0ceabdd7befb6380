"""Fault and abuse run of the serving API, on loopback only (``docs/reliability.md`` records its figures).

One app is started here (tiny profile, API keys on, limits tight enough that every accepted request is
cheap), then:

1. **hostile requests** — ``hostile_cases()``: corrupt, truncated, empty, animated, tiny and bomb images
   in every accepted format and a few refused ones, through both upload routes; bodies that are not
   JSON objects; malformed HTTP framing; missing and wrong keys; parameters past every limit. Each
   case states the statuses it may get.
2. **schemathesis** — schema-conforming and schema-violating cases generated from the live OpenAPI
   document for every operation (``SCHEMA_EXAMPLES`` per operation and mode).
3. **load** — a burst of ``BURST`` concurrent generation requests, then ``CONCURRENCY`` clients for
   ``DURATION_S`` seconds; only 200 and the documented back-pressure 503 may come back.

Counted: cases, statuses, server errors (any 5xx but the documented 503/504: must be 0), error
responses not in the API's one JSON shape (must be 0), cases with an unexpected status (must be 0).
The ratio is p50 latency of a generation request under sustained load over p50 alone.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import statistics
import time
from collections import Counter
from dataclasses import dataclass

import numpy as np
from PIL import Image

from core.paths import REPO_ROOT

PHOTO = REPO_ROOT.parent / "shared" / "dreambooth" / "images" / "dog" / "00.jpg"
KEY = "abuse-run-key-0123456789abcdef"
SCHEMA_EXAMPLES = 60
BURST = 100
CONCURRENCY = 16
DURATION_S = 30.0
SETTINGS = [
    "serving.app_name=s3jedi-abuse",
    "serving.request_timeout_s=60",
    "serving.auth.rate_limit_per_minute=100000",  # one client sends everything; the limiter has its own tests
    "serving.auth.rate_limit_burst=10000",
    "serving.limits.max_request_bytes=2097152",
    "serving.limits.max_image_bytes=524288",
    "serving.limits.max_image_pixels=1000000",
    "serving.limits.max_side=64",
    "serving.limits.max_steps=4",
    "serving.limits.max_images_per_request=2",
    "serving.limits.max_images_per_prompt=2",
    "serving.limits.max_prompts=2",
    "serving.defaults.steps=2",
    "serving.personalizer.max_ongoing_requests=8",
    "serving.personalizer.max_queued_requests=16",
    "serving.generator.max_ongoing_requests=8",
    "serving.generator.max_queued_requests=16",
]
DOCUMENTED_5XX = {503, 504}


@dataclass(frozen=True)
class Case:
    name: str
    allowed: frozenset[int]
    send: object
    """``send(client, url) -> (status, content type, body bytes)`` (a coroutine function)."""


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def hostile_images() -> dict[str, tuple[bytes, frozenset[int]]]:
    """name → (file bytes, statuses it may get). Includes the cases issue 22 found (animated, 1×1)."""
    from tests.serving.samples import bomb_png, png_bytes

    photo = PHOTO.read_bytes()
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    frames = [Image.fromarray(np.full((64, 64, 3), v, np.uint8)) for v in (0, 255)]
    exif = Image.Exif()
    exif[0x0112] = 6
    bad = frozenset({400})
    images = {
        "empty file": (b"", bad),
        "one byte": (b"\x89", frozenset({415})),
        "text": (b"hello, this is not an image", frozenset({415})),
        "JPEG magic then zeros": (b"\xff\xd8\xff" + b"\0" * 500, bad),
        "PNG magic then garbage": (b"\x89PNG\r\n\x1a\n" + rng.bytes(500), bad),
        "WEBP header then garbage": (b"RIFF\x00\x01\x00\x00WEBPVP8 " + rng.bytes(300), bad),
        "polyglot PNG magic + JPEG": (b"\x89PNG\r\n\x1a\n" + photo, bad),
        "ZIP": (b"PK\x03\x04" + rng.bytes(200), frozenset({415})),
        "PDF": (b"%PDF-1.4\n" + rng.bytes(200), frozenset({415})),
        "SVG": (b'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"/>', frozenset({415})),
        "GIF": (png_bytes(fmt="GIF"), frozenset({415})),
        "BMP": (png_bytes(fmt="BMP"), frozenset({415})),
        "TIFF": (png_bytes(fmt="TIFF"), frozenset({415})),
        "ICO": (_encode(noise, "ICO"), frozenset({415})),
        "truncated JPEG (half)": (photo[: len(photo) // 2], bad),
        "truncated JPEG (header only)": (photo[:600], bad),
        "truncated PNG": (_encode(noise, "PNG")[:200], bad),
        "truncated WEBP": (_encode(noise, "WEBP")[:60], bad),
        "PNG bomb 3000²": (bomb_png(3000, 3000), frozenset({413})),
        "PNG bomb 20000² (beyond Pillow's own limit)": (bomb_png(20_000, 20_000), frozenset({413})),
        "PNG bomb 1×10⁷": (bomb_png(1, 10_000_000), frozenset({413, 422})),
        "PNG declaring 0×0": (bomb_png(0, 0), frozenset({400, 422})),
        "animated WEBP": (_encode(frames[0], "WEBP", save_all=True, append_images=frames[1:]), frozenset({415})),
        "animated PNG": (_encode(frames[0], "PNG", save_all=True, append_images=frames[1:]), frozenset({415})),
        "1×1 PNG": (png_bytes((1, 1)), frozenset({422})),
        "63×200 PNG": (png_bytes((63, 200)), frozenset({422})),
        "over max_image_bytes": (png_bytes((600, 600), noise=True), frozenset({413})),
        "CMYK JPEG": (_encode(noise.convert("CMYK"), "JPEG"), frozenset({200})),
        "16-bit PNG": (_encode(Image.fromarray(np.full((64, 64), 40000, np.uint16)), "PNG"), frozenset({200})),
        "palette PNG": (_encode(noise.convert("P"), "PNG"), frozenset({200})),
        "EXIF-rotated JPEG": (_encode(noise, "JPEG", exif=exif), frozenset({200})),
        "the DreamBooth photo": (photo, frozenset({200})),
    }
    return images


def hostile_cases() -> list[Case]:
    from tests.serving.samples import raw_request

    auth = {"Authorization": f"Bearer {KEY}"}
    cases: list[Case] = []

    def json_case(name, allowed, body, path="/v1/personalize", headers=None, content=None):
        async def send(client, url):
            reply = await client.post(
                url + path,
                json=body if content is None else None,
                content=content,
                headers={
                    **auth,
                    **({"Content-Type": "application/json"} if content is not None else {}),
                    **(headers or {}),
                },
            )
            return reply.status_code, reply.headers.get("content-type", ""), reply.content

        cases.append(Case(name, frozenset(allowed), send))

    for name, (data, allowed) in hostile_images().items():
        body = {"references": [{"image": base64.b64encode(data).decode()}], "prompts": ["a dog"], "steps": 1}
        json_case(f"JSON upload: {name}", allowed, body)

        async def send_form(client, url, data=data):
            reply = await client.post(
                url + "/v1/personalize/upload",
                files=[("references", ("x.jpg", data, "image/jpeg"))],
                data={"prompts": ["a dog"], "steps": "1"},
                headers=auth,
            )
            return reply.status_code, reply.headers.get("content-type", ""), reply.content

        cases.append(Case(f"multipart upload: {name}", allowed, send_form))

    photo = base64.b64encode(PHOTO.read_bytes()).decode()
    ok = {"references": [{"image": photo}], "prompts": ["a dog"], "steps": 1}
    for name, content in {
        "body []": b"[]",
        "body null": b"null",
        "empty body": b"",
        "body 3": b"3",
        'body "text"': b'"text"',
        "body [object]": json.dumps([ok]).encode(),
        "truncated JSON": b'{"prompts": [',
        "NaN guidance": b'{"prompts": ["x"], "guidance_scale": NaN}',
        "deeply nested": b"[" * 5000 + b"]" * 5000,
        "not UTF-8": b'{"prompts": ["\xff\xfe"]}',
        "duplicate keys": b'{"prompts": ["a"], "prompts": ["b", "c", "d"]}',
    }.items():
        json_case(name, {422, 400}, None, path="/v1/generate", content=content)
    for name, change, allowed in [
        ("base64 not base64", {"references": [{"image": "not base64!"}]}, {400}),
        ("data URL without comma", {"references": [{"image": "data:image/png;base64"}]}, {400}),
        ("too many references", {"references": [{"image": photo}] * 4}, {422}),
        ("no references", {"references": []}, {422}),
        ("steps 0", {"steps": 0}, {422}),
        ("steps over max", {"steps": 5}, {422}),
        ("seed -1", {"seed": -1}, {422}),
        ("seed 2^53", {"seed": 2**53}, {422}),
        ("seed as text", {"seed": "seven"}, {422}),
        ("height 60", {"height": 60}, {422}),
        ("width over max_side", {"width": 72}, {422}),
        ("guidance over max", {"guidance_scale": 1e9}, {422}),
        ("timeout 0", {"timeout_s": 0}, {422}),
        ("unknown field", {"surprise": True}, {422}),
        ("prompt over max chars", {"prompts": ["x" * 10_000]}, {422}),
        ("too many prompts", {"prompts": ["a", "b", "c"]}, {422}),
        ("images over max", {"images_per_prompt": 2, "prompts": ["a", "b"]}, {422}),
        ("prompt with NUL and RTL marks", {"prompts": ["a\x00dog \u202e", "\U0001f436" * 20]}, {200}),
    ]:
        json_case(name, allowed, {**ok, **change})
    for name, subject in [("subject ../x", "../lora"), ("subject unknown", "nobody"), ("subject 65 chars", "a" * 65)]:
        json_case(name, {404, 422}, {"prompts": ["x"], "subject_id": subject, "steps": 1}, path="/v1/generate")
    for name, headers in [
        ("no key", {"Authorization": ""}),
        ("wrong key", {"Authorization": "Bearer wrong-key-0123456789abcdef"}),
        ("Basic auth", {"Authorization": "Basic YTpi"}),
        ("key without scheme", {"Authorization": KEY}),
    ]:
        json_case(f"auth: {name}", {401}, ok, headers=headers)
    json_case("text/plain body", {415}, None, headers={"Content-Type": "text/plain"}, content=b"hello")
    json_case("declared body over max_request_bytes", {413}, None, content=b"{" + b" " * 2_100_000 + b"}")

    async def get_unknown(client, url):
        reply = await client.get(url + "/v1/../../etc/passwd", headers=auth)
        return reply.status_code, reply.headers.get("content-type", ""), reply.content

    cases.append(Case("path traversal URL", frozenset({404}), get_unknown))

    for name, length in [("abc", b"abc"), ("-1", b"-1"), ("1e3", b"1e3"), ("two values", b"12, 13")]:

        async def send_raw(client, url, length=length):
            head = b"POST /v1/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            head += b"Authorization: Bearer " + KEY.encode() + b"\r\nContent-Length: " + length
            status, headers, content = await asyncio.to_thread(raw_request, url, head, b'{"prompts": ["x"]}')
            return status, headers.get("content-type", ""), content

        cases.append(Case(f"Content-Length {name}", frozenset({400}), send_raw))
    return cases


def _shape_ok(status: int, content_type: str, body: bytes) -> bool:
    """Every error is the API's one JSON shape: {"error": {"status": <status>, "message": ...}}."""
    if status < 400:
        return True
    try:
        error = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return False
    return content_type.startswith("application/json") and error.get("status") == status and bool(error["message"])


async def _hostile(url: str) -> dict:
    import httpx

    statuses: Counter[int] = Counter()
    unexpected, misshaped = [], []
    async with httpx.AsyncClient(timeout=120) as client:
        for case in hostile_cases():
            status, content_type, body = await case.send(client, url)
            statuses[status] += 1
            if status not in case.allowed:
                unexpected.append(f"{case.name}: {status} {body[:200]!r}")
            if not _shape_ok(status, content_type, body):
                misshaped.append(f"{case.name}: {status} {content_type} {body[:120]!r}")
    return {
        "cases": sum(statuses.values()),
        "statuses": dict(sorted(statuses.items())),
        "unexpected": unexpected,
        "not_json_shape": misshaped,
    }


def _schemathesis(url: str) -> dict:
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis import GenerationMode

    from tests.serving.test_fuzz import CHECKS

    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    for operation in (r.ok() for r in schema.get_all_operations()):
        modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if operation.body or operation.query else [])
        for mode in modes:

            @settings(
                max_examples=SCHEMA_EXAMPLES,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                derandomize=True,
                database=None,
            )
            @given(case=operation.as_strategy(mode))
            def run(case):
                response = case.call(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=120)
                statuses[response.status_code] += 1
                try:
                    case.validate_response(response, checks=CHECKS)
                except Exception as exc:  # every failure is recorded and the run goes on
                    failures.append(f"{operation.method.upper()} {operation.path} ({mode.value}): {str(exc)[:200]}")

            run()
    return {"cases": sum(statuses.values()), "statuses": dict(sorted(statuses.items())), "failures": failures}


async def _load(url: str) -> dict:
    import httpx

    photo = PHOTO.read_bytes()
    body = {"references": [{"image": base64.b64encode(photo).decode()}], "prompts": ["a dog"], "steps": 2}
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(timeout=120, headers=headers, limits=httpx.Limits(max_connections=200)) as client:

        async def one(i: int) -> tuple[int, float]:
            start = time.perf_counter()
            reply = await client.post(f"{url}/v1/personalize", json={**body, "seed": i})
            return reply.status_code, time.perf_counter() - start

        alone = [await one(i) for i in range(5)]
        burst = await asyncio.gather(*[one(i) for i in range(BURST)])
        sustained: list[tuple[int, float]] = []
        deadline = time.perf_counter() + DURATION_S

        async def client_loop(c: int) -> None:
            i = 0
            while time.perf_counter() < deadline:
                sustained.append(await one(10_000 * (c + 1) + i))
                i += 1

        await asyncio.gather(*[client_loop(c) for c in range(CONCURRENCY)])

    def summary(results):
        ok = sorted(s for status, s in results if status == 200)
        return {
            "requests": len(results),
            "statuses": dict(sorted(Counter(status for status, _ in results).items())),
            "p50_s": statistics.median(ok) if ok else None,
            "p95_s": ok[min(len(ok) - 1, round(0.95 * (len(ok) - 1)))] if ok else None,
        }

    return {"alone": summary(alone), "burst": summary(burst), "sustained": summary(sustained)}


def run() -> dict:
    from ray import serve

    from core.config import load_config
    from core.zoo import build
    from serving.app import start
    from serving.demo import free_port

    build("tiny", ["sd", "jedi"])
    os.environ["S3JEDI_ABUSE_KEYS"] = KEY
    cfg = load_config("tiny", [*SETTINGS, f"serving.port={free_port()}", "serving.auth.api_keys_env=S3JEDI_ABUSE_KEYS"])
    url = start(cfg).rstrip("/")
    try:
        from serving.client import Client

        Client(url).wait_ready(timeout_s=300)
        started = time.perf_counter()
        hostile = asyncio.run(_hostile(url))
        fuzz = _schemathesis(url)
        load = asyncio.run(_load(url))
        seconds = time.perf_counter() - started
    finally:
        serve.shutdown()
    server_errors = sum(
        n
        for part in (hostile, fuzz, load["burst"], load["sustained"])
        for status, n in part["statuses"].items()
        if status >= 500 and status not in DOCUMENTED_5XX
    )
    ratio = load["sustained"]["p50_s"] / load["alone"]["p50_s"] if load["sustained"]["p50_s"] else None
    print(
        f"   hostile requests: {hostile['cases']} cases, statuses {hostile['statuses']}, "
        f"{len(hostile['unexpected'])} unexpected, {len(hostile['not_json_shape'])} not in the JSON error shape"
    )
    for line in hostile["unexpected"] + hostile["not_json_shape"]:
        print(f"     ! {line}")
    print(
        f"   schemathesis: {fuzz['cases']} cases, statuses {fuzz['statuses']}, {len(fuzz['failures'])} check failures"
    )
    for line in fuzz["failures"][:10]:
        print(f"     ! {line}")
    for part in ("burst", "sustained"):
        print(f"   load {part}: {load[part]}")
    print(f"   server errors (5xx but 503/504): {server_errors}; p50 sustained/alone: {ratio:.2f}")
    return {
        "settings": SETTINGS,
        "hostile": hostile,
        "schemathesis": fuzz,
        "load": {**load, "burst_size": BURST, "concurrency": CONCURRENCY, "duration_s": DURATION_S},
        "server_errors": server_errors,
        "p50_sustained_over_alone": ratio,
        "seconds": round(seconds, 1),
    }
