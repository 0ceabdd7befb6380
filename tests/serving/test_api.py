"""The serving app over HTTP, as a client sees it: personalization with real DreamBooth photos,
fine-tuned subjects, batching, and what happens to bad, unauthorised and excessive requests."""

from __future__ import annotations

import asyncio
import base64
import io
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from core.jedi.guidance import DEFAULT_IMAGE_GUIDANCE_SCALE, DEFAULT_JOINT_TARGETS
from tests.serving.conftest import APP, KEYS
from tests.serving.samples import b64, bomb_png, png_bytes, png_from, raw_request


def decode(reply: dict) -> list[np.ndarray]:
    return [np.asarray(Image.open(io.BytesIO(base64.b64decode(i["image"])))) for i in reply["images"]]


def personalize_body(photos, prompts=("a photo of the dog on the beach",), **params) -> dict:
    return {"references": [{"image": b64(p)} for p in photos], "prompts": list(prompts), **params}


def post(served, path: str, body: dict | None = None, key: str = "main", **kwargs) -> httpx.Response:
    return httpx.post(f"{served.url}{path}", json=body, headers=served.headers(key), timeout=60, **kwargs)


def assert_error(response: httpx.Response, status: int, field: str | None, limit=None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["status"] == status
    if field is not None:
        assert error["field"] == field, error
        assert error["message"].startswith(field.split("[")[0]) or field in error["message"], error
    if limit is not None:
        assert error["limit"] == limit, error
    return error


# -- health, discovery ---------------------------------------------------------------------------
def test_health_readiness_models_and_docs(served):
    assert httpx.get(f"{served.url}/healthz").json() == {"status": "ok", "deployments": None}
    ready = httpx.get(f"{served.url}/readyz").json()
    assert ready["status"] == "ready"
    assert ready["deployments"]["Personalizer"] == ready["deployments"]["Generator"] == "HEALTHY"

    models = httpx.get(f"{served.url}/v1/models", headers=served.headers()).json()
    assert models["personalize"]["max_references"] == 3  # the tiny JeDi's limit, below the configured 8
    assert models["limits"]["max_steps"] == 30
    assert {s["subject_id"] for s in models["subjects"]} == {"lora-dog", "ti-dog"}

    assert "swagger" in httpx.get(f"{served.url}/docs").text.lower()
    spec = httpx.get(f"{served.url}/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert schemas["PersonalizeRequest"]["properties"]["references"]["maxItems"] == 3
    steps = schemas["PersonalizeRequest"]["properties"]["steps"]["anyOf"][0]
    assert steps["maximum"] == 30
    assert "HTTPBearer" in spec["components"]["securitySchemes"]


# -- personalization -----------------------------------------------------------------------------
def test_personalize_with_dreambooth_photos_is_reproducible(served, photos):
    body = personalize_body(photos[:3], ["a photo of the dog on the beach", "a dog in the snow"], seed=7, steps=3)
    first = post(served, "/v1/personalize", body)
    assert first.status_code == 200, first.text
    reply = first.json()
    assert [(i["prompt"], i["seed"]) for i in reply["images"]] == [
        ("a photo of the dog on the beach", 7),
        ("a dog in the snow", 8),
    ]
    assert reply["parameters"] == {
        "steps": 3,
        "guidance": "paper",
        "guidance_scale": None,  # the paper's guidance has one scale
        "image_guidance_scale": DEFAULT_IMAGE_GUIDANCE_SCALE,
        "joint_targets": DEFAULT_JOINT_TARGETS,
        "negative_prompt": "",
        "height": 64,
        "width": 64,
        "seed": 7,
    }
    assert reply["model"] == "tiny" and reply["batch_size"] >= 1
    assert 0 < reply["run_seconds"] <= reply["seconds"]
    images = decode(reply)
    assert [im.shape for im in images] == [(64, 64, 3)] * 2
    assert not np.array_equal(images[0], images[1])
    again = decode(post(served, "/v1/personalize", body).json())
    for a, b in zip(images, again, strict=True):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_guidance_mode_and_joint_targets_are_request_fields(served, photos):
    body = personalize_body(
        photos[:2], images_per_prompt=2, seed=3, steps=2, guidance="decomposed", guidance_scale=2.0, joint_targets=True
    )
    reply = post(served, "/v1/personalize", body)
    assert reply.status_code == 200, reply.text
    parameters = reply.json()["parameters"]
    assert (parameters["guidance"], parameters["guidance_scale"], parameters["joint_targets"]) == (
        "decomposed",
        2.0,
        True,
    )
    assert len(decode(reply.json())) == 2


def test_personalize_upload_multipart_and_multipart_reply(served, photos):
    files = [("references", (p.name, p.read_bytes(), "image/jpeg")) for p in photos[:2]]
    data = {"prompts": ["a photo of the dog"], "captions": ["a dog", "a dog lying down"], "images_per_prompt": "2"}
    reply = httpx.post(
        f"{served.url}/v1/personalize/upload",
        files=files,
        data=data,
        headers={**served.headers(), "Accept": "multipart/mixed"},
        timeout=60,
    )
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("multipart/mixed; boundary=")
    boundary = reply.headers["content-type"].split("boundary=")[1].encode()
    parts = [p for p in reply.content.split(b"--" + boundary) if p.strip(b"-\r\n")]
    heads_bodies = [p.strip(b"\r\n").split(b"\r\n\r\n", 1) for p in parts]
    assert b"application/json" in heads_bodies[0][0]
    import json

    meta = json.loads(heads_bodies[0][1])
    assert len(meta["images"]) == 2 and "image" not in meta["images"][0]
    pngs = [Image.open(io.BytesIO(body)) for head, body in heads_bodies[1:]]
    assert [im.format for im in pngs] == ["PNG", "PNG"] and pngs[0].size == (64, 64)

    bad = httpx.post(
        f"{served.url}/v1/personalize/upload",
        files=files,
        data={**data, "captions": ["only one"]},
        headers=served.headers(),
        timeout=60,
    )
    assert_error(bad, 422, "captions", limit=2)


def test_concurrent_requests_share_a_batch_and_images_do_not_depend_on_it(served, photos):
    same = [personalize_body(photos[:2], [f"a dog, variant {i}"], seed=100 + i, steps=2) for i in range(3)]
    other = personalize_body(photos[2:4], ["another dog"], seed=200, steps=2)
    solo = [decode(post(served, "/v1/personalize", body).json())[0] for body in [*same, other]]

    async def together():
        async with httpx.AsyncClient(timeout=60, headers=served.headers()) as client:
            return await asyncio.gather(*[client.post(f"{served.url}/v1/personalize", json=b) for b in [*same, other]])

    replies = asyncio.run(together())
    assert all(r.status_code == 200 for r in replies), [r.text for r in replies]
    assert [r.json()["batch_size"] for r in replies] == [4, 4, 4, 4]
    for reply, alone in zip(replies, solo, strict=True):
        assert np.abs(decode(reply.json())[0].astype(int) - alone.astype(int)).max() <= 2


# -- fine-tuned subjects ---------------------------------------------------------------------------
def test_generate_with_fine_tuned_subjects(served):
    body = {"prompts": ["a {0} {1} on the beach"], "seed": 3, "steps": 2}
    base = post(served, "/v1/generate", body).json()
    assert base["images"][0]["prompt"] == "a {0} {1} on the beach"  # no subject: the prompt is taken as is
    outputs = {None: decode(base)[0]}
    for subject in ("lora-dog", "ti-dog"):
        reply = post(served, "/v1/generate", {**body, "subject_id": subject})
        assert reply.status_code == 200, reply.text
        assert reply.json()["images"][0]["prompt"] == "a <sks> dog on the beach"
        assert reply.json()["subject_id"] == subject
        outputs[subject] = decode(reply.json())[0]
    assert not np.array_equal(outputs[None], outputs["lora-dog"])
    assert not np.array_equal(outputs[None], outputs["ti-dog"])
    assert not np.array_equal(outputs["lora-dog"], outputs["ti-dog"])
    again = decode(post(served, "/v1/generate", body).json())[0]
    assert np.array_equal(again, outputs[None])  # the base pipeline is untouched by the subjects
    assert served.model_info("Generator")["stats"]["subjects_loaded"] >= 2


def test_unknown_and_unsafe_subject_ids(served):
    assert_error(post(served, "/v1/generate", {"prompts": ["x"], "subject_id": "nobody"}), 404, "subject_id")
    for bad in ("../lora-dog", "Lora", "a" * 65, "x/y"):
        assert_error(post(served, "/v1/generate", {"prompts": ["x"], "subject_id": bad}), 422, "subject_id")


# -- limits ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "status", "field", "limit"),
    [
        ({"steps": 31}, 422, "steps", 30),
        ({"prompts": ["x" * 201]}, 422, "prompts[0]", 200),
        ({"prompts": ["a"] * 5}, 422, "prompts", 4),
        ({"prompts": ["a", "b"], "images_per_prompt": 3}, 422, "images_per_prompt", 4),
        ({"images_per_prompt": 5}, 422, "images_per_prompt", 4),
        ({"height": 60}, 422, "height", 8),
        ({"width": 136}, 422, "width", 128),
        ({"guidance_scale": 31}, 422, "guidance_scale", 30.0),
        ({"guidance_scale": 5.0}, 422, "guidance_scale", None),  # paper guidance: λ is its one scale
        ({"guidance": "decomposed", "guidance_scale": 31}, 422, "guidance_scale", 30.0),
        ({"guidance": "cfg"}, 422, "guidance", None),
        ({"image_guidance_scale": -1}, 422, "image_guidance_scale", 0.0),
        ({"joint_targets": "sometimes"}, 422, "joint_targets", None),
        ({"seed": -1}, 422, "seed", 0),
        ({"timeout_s": 0}, 422, "timeout_s", 0.0),
        ({"surprise": 1}, 422, "surprise", None),
        ({"image": png_bytes((700, 700), noise=True)}, 413, "references[0].image", 1048576),
        ({"image": bomb_png(3000, 3000)}, 413, "references[0].image", 1000000),
        ({"image": png_bytes()[:60]}, 400, "references[0].image", None),
        ({"image": png_bytes(fmt="GIF")}, 415, "references[0].image", ["PNG", "JPEG", "WEBP"]),
        ({"image": png_bytes(fmt="BMP")}, 415, "references[0].image", ["PNG", "JPEG", "WEBP"]),
        ({"image": b""}, 400, "references[0].image", None),
        ({"image_text": "not base64!"}, 400, "references[0].image", None),
    ],
)
def test_every_limit_is_a_4xx_naming_field_and_limit(served, photos, change, status, field, limit):
    body = personalize_body(photos[:1])
    change = dict(change)
    if "image" in change:
        body["references"][0]["image"] = b64(change.pop("image"))
    if "image_text" in change:
        body["references"][0]["image"] = change.pop("image_text")
    body.update(change)
    assert_error(post(served, "/v1/personalize", body), status, field, limit)


def test_too_many_references_is_named(served, photos):
    body = personalize_body(photos[:4])
    assert_error(post(served, "/v1/personalize", body), 422, "references", 3)


def test_truncated_jpeg_and_empty_upload(served, photos):
    truncated = photos[0].read_bytes()[:5000]
    assert_error(post(served, "/v1/personalize", personalize_body([truncated])), 400, "references[0].image")
    reply = httpx.post(
        f"{served.url}/v1/personalize/upload",
        files=[("references", ("empty.jpg", b"", "image/jpeg"))],
        data={"prompts": ["a dog"]},
        headers=served.headers(),
    )
    assert_error(reply, 400, "references[0]")


def test_request_size_content_type_and_json_errors(served):
    big = httpx.post(
        f"{served.url}/v1/personalize",
        content=b"{" + b" " * (4 * 1024 * 1024 + 10) + b"}",
        headers={**served.headers(), "Content-Type": "application/json"},
    )
    assert_error(big, 413, "body", 4194304)
    text = httpx.post(
        f"{served.url}/v1/personalize", content=b"hello", headers={**served.headers(), "Content-Type": "text/plain"}
    )
    assert_error(text, 415, "content-type", "application/json")
    form = httpx.post(f"{served.url}/v1/personalize/upload", json={"prompts": ["x"]}, headers=served.headers())
    assert_error(form, 415, "content-type", "multipart/form-data")
    broken = httpx.post(
        f"{served.url}/v1/generate",
        content=b'{"prompts": [',
        headers={**served.headers(), "Content-Type": "application/json"},
    )
    assert_error(broken, 422, "body")
    nan = httpx.post(
        f"{served.url}/v1/generate",
        content=b'{"prompts": ["x"], "guidance_scale": NaN}',
        headers={**served.headers(), "Content-Type": "application/json"},
    )
    assert_error(nan, 422, "guidance_scale")
    missing = httpx.get(f"{served.url}/v1/nothing-here", headers=served.headers())
    assert missing.status_code == 404 and missing.json()["error"]["status"] == 404


@pytest.mark.parametrize("content", [b"[]", b"null", b"", b'[{"prompts": ["x"]}]', b"3", b'"text"'])
def test_a_body_that_is_not_a_json_object_is_named(served, content):
    reply = httpx.post(
        f"{served.url}/v1/generate", content=content, headers={**served.headers(), "Content-Type": "application/json"}
    )
    error = assert_error(reply, 422, "body")
    assert "JSON object" in error["message"], error


@pytest.mark.parametrize("length", [b"abc", b"-1", b"1e3", b"12, 13"])
def test_a_malformed_content_length_gets_the_json_error_shape(served, length):
    status, headers, content = raw_request(
        served.url,
        b"POST /v1/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + b"Authorization: Bearer "
        + KEYS["main"].encode()
        + b"\r\nContent-Length: "
        + length,
        b'{"prompts": ["x"]}',
    )
    assert status == 400 and headers["content-type"] == "application/json", (status, headers, content)
    import json

    error = json.loads(content)["error"]
    assert error["status"] == 400 and error["field"] == "content-length", error


# -- auth, rate limit, back-pressure, deadlines ------------------------------------------------------
def test_auth_is_required_on_v1_routes(served):
    for headers in ({}, {"Authorization": "Bearer wrong-key-0123456789abcdef"}, {"Authorization": "Basic abc"}):
        reply = httpx.post(f"{served.url}/v1/generate", json={"prompts": ["x"]}, headers=headers)
        assert_error(reply, 401, "authorization")
        assert reply.headers["www-authenticate"] == "Bearer"
    assert_error(httpx.get(f"{served.url}/v1/models"), 401, "authorization")
    assert httpx.get(f"{served.url}/healthz").status_code == 200


def test_rate_limit_per_key_on_every_route_that_spends_model_time(served):
    from serving.routes import ROUTES

    spending = [r.path for r in ROUTES if r.spends is not None]

    async def burst():
        async with httpx.AsyncClient(timeout=60, headers=served.headers("rate")) as client:
            # Cheap: each is refused (415/422) after the rate limiter counted it.
            return await asyncio.gather(
                *[client.post(f"{served.url}{spending[i % len(spending)]}", json={"prompts": []}) for i in range(120)]
            )

    replies = asyncio.run(burst())
    statuses = [r.status_code for r in replies]
    assert set(statuses) <= {415, 422, 429} and statuses.count(429) >= 30, statuses
    for path in spending:  # one bucket per key, drawn by all of them, enforced on each
        assert any(r.status_code == 429 for r in replies if r.url.path == path), path
    limited = next(r for r in replies if r.status_code == 429)
    error = assert_error(limited, 429, "authorization", 600)
    assert int(limited.headers["retry-after"]) >= 1 and "rate_limit_per_minute" in error["message"]
    assert post(served, "/v1/generate", {"prompts": []}, key="main").status_code == 422  # other keys unaffected


def test_full_queue_answers_503_with_retry_after(served, photos):
    small = np.asarray(Image.open(photos[0]).resize((64, 64)))
    # Each accepted request would run for seconds; its deadline cancels it to keep the test short.
    body = personalize_body([png_from(small)], steps=30, images_per_prompt=2, timeout_s=3)

    async def flood():
        async with httpx.AsyncClient(timeout=120, headers=served.headers()) as client:
            return await asyncio.gather(*[client.post(f"{served.url}/v1/personalize", json=body) for _ in range(20)])

    replies = asyncio.run(flood())
    statuses = sorted(r.status_code for r in replies)
    # 4 running + 4 queued fit; whatever arrives while both are full is turned away at once.
    assert set(statuses) <= {200, 503, 504} and statuses.count(503) >= 4, statuses
    busy = next(r for r in replies if r.status_code == 503)
    assert_error(busy, 503, "serving.personalizer.max_queued_requests", 4)
    assert busy.headers["retry-after"] == "3"


def _wait_for(predicate, timeout_s: float = 30.0):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.2)


def _settled_stats(served) -> dict:
    """Personalizer counters once no step has run for a while (the replica is idle)."""
    previous = served.model_info("Personalizer")["stats"]
    while True:
        time.sleep(0.5)
        current = served.model_info("Personalizer")["stats"]
        if current.get("steps") == previous.get("steps"):
            return current
        previous = current


LONG = dict(prompts=["a", "b"], images_per_prompt=2, steps=30, height=128, width=128)


def _assert_abandoned_run_stopped(served, before: dict) -> None:
    _wait_for(
        lambda: (
            served.model_info("Personalizer")["stats"].get("cancelled_requests", 0)
            > before.get("cancelled_requests", 0)
        )
    )
    after = _settled_stats(served)
    assert after.get("images", 0) == before.get("images", 0)  # the abandoned request produced nothing
    assert after.get("steps", 0) - before.get("steps", 0) < LONG["steps"]  # and was stopped early


def test_deadline_gives_504_and_cancels_the_run(served, photos):
    before = _settled_stats(served)
    start = time.monotonic()
    reply = post(served, "/v1/personalize", {**personalize_body(photos[:3], **LONG), "timeout_s": 0.5})
    assert_error(reply, 504, "timeout_s", 0.5)
    assert time.monotonic() - start < 10
    _assert_abandoned_run_stopped(served, before)


def test_client_disconnect_cancels_the_run(served, photos):
    before = _settled_stats(served)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{served.url}/v1/personalize",
            json=personalize_body(photos[:3], **LONG),
            headers=served.headers(),
            timeout=1.0,
        )
    _assert_abandoned_run_stopped(served, before)


def test_metrics_are_exported_to_prometheus(served):
    import ray

    port = ray._private.worker.global_worker.node.metrics_export_port
    wanted = (
        "ray_s3jedi_serving_requests_total",
        "ray_s3jedi_serving_request_latency_s",
        "ray_s3jedi_serving_images_generated_total",
        "ray_s3jedi_serving_batch_size",
        "ray_s3jedi_serving_queue_length",
    )
    text = ""

    def exported() -> bool:
        nonlocal text
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        return all(name in text for name in wanted)

    assert post(served, "/v1/generate", {"prompts": ["a teapot"]}).status_code == 200
    _wait_for(exported, timeout_s=40)
    assert f'application="{APP}"' in text
    assert any(
        line.startswith("ray_s3jedi_serving_requests_total")
        and 'path="/v1/generate"' in line
        and 'status="200"' in line
        for line in text.splitlines()
    )


def test_keys_are_never_echoed(served):
    reply = httpx.post(f"{served.url}/v1/generate", json={"prompts": ["x"]}, headers={"Authorization": "Bearer nope"})
    assert KEYS["main"] not in reply.text and "nope" not in reply.text
