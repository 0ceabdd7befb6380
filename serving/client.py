"""A small HTTP client of the serving API (standard library only), for scripts, the demo and benchmarks.

client = Client("http://127.0.0.1:8000", api_key=os.environ.get("S3JEDI_API_KEY"))
reply = client.personalize(["dog/00.jpg", "dog/01.jpg"], ["a photo of the dog on the beach"], steps=4)
for image in images(reply):
    ...
"""

from __future__ import annotations

import base64
import io
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

from PIL import Image


class ApiCallError(RuntimeError):
    def __init__(self, status: int, body: dict | str, headers: dict):
        self.status, self.body, self.headers = status, body, headers
        detail = body.get("error", {}).get("message") if isinstance(body, dict) else body
        super().__init__(f"HTTP {status}: {detail}")


class Client:
    def __init__(self, base_url: str, api_key: str | None = None, timeout_s: float = 300.0):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout_s = timeout_s

    def _request(self, method: str, path: str, body: dict | None = None) -> dict:
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.base_url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                parsed: dict | str = json.loads(raw)
            except ValueError:
                parsed = raw.decode(errors="replace")
            raise ApiCallError(exc.code, parsed, dict(exc.headers)) from None

    def wait_ready(self, timeout_s: float = 120.0) -> dict:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return self._request("GET", "/readyz")
            except (ApiCallError, urllib.error.URLError, ConnectionError) as exc:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.base_url} not ready after {timeout_s:g} s: {exc}") from None
                time.sleep(0.5)

    def models(self) -> dict:
        return self._request("GET", "/v1/models")

    def personalize(
        self, references: list[str | Path | bytes], prompts: list[str], captions: list[str] | None = None, **params
    ) -> dict:
        refs = []
        for i, ref in enumerate(references):
            data = ref if isinstance(ref, bytes) else Path(ref).read_bytes()
            refs.append({"image": base64.b64encode(data).decode(), "caption": captions[i] if captions else ""})
        return self._request("POST", "/v1/personalize", {"references": refs, "prompts": prompts, **params})

    def generate(self, prompts: list[str], subject_id: str | None = None, **params) -> dict:
        body = {"prompts": prompts, **params}
        if subject_id is not None:
            body["subject_id"] = subject_id
        return self._request("POST", "/v1/generate", body)


def images(reply: dict) -> list[Image.Image]:
    """The PIL images of a generation reply."""
    return [Image.open(io.BytesIO(base64.b64decode(item["image"]))) for item in reply["images"]]
