"""The API's error JSON for requests the HTTP server cannot even parse (a malformed ``Content-Length``,
a broken request line or header).

uvicorn answers those itself, before any ASGI code runs, with a plain-text 400 ("Invalid HTTP request
received."), so no middleware of the app can see them. Serve runs the function named by
``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH`` in each proxy (and direct-ingress replica) as its HTTP
server starts, to collect middlewares; ``json_framing_errors`` uses that moment to make uvicorn's
HTTP/1.1 protocols write ``serving.errors``' shape instead, and adds no middleware. The variable
reaches the proxies through the Serve controller's environment (``CONTROLLER_OPTIONS``), which its
proxies inherit; ``tests/serving/test_api.py`` sends such requests and checks the shape, so a
uvicorn that changes these methods fails a test rather than silently going back to plain text.
"""

from __future__ import annotations

import re

from serving.errors import ErrorBody, ErrorDetail

CALLBACK = "serving.framing:json_framing_errors"
CONTROLLER_OPTIONS = {"runtime_env": {"env_vars": {"RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH": CALLBACK}}}
_RECEIVED = "_s3jedi_received"
"""Attribute of a connection's protocol object: the last bytes it received (to name the bad field)."""
_CONTENT_LENGTH = re.compile(rb"^content-length:[ \t]*(.*?)[ \t]*$", re.IGNORECASE | re.MULTILINE)


def framing_error(received: bytes) -> bytes:
    """The JSON body for a request that did not parse; names ``content-length`` when that header is
    what is wrong (not a single byte count), else the request as a whole."""
    head = received.split(b"\r\n\r\n", 1)[0].replace(b"\r\n", b"\n")
    lengths = {v[:40].decode("latin-1") for v in _CONTENT_LENGTH.findall(head)}
    if lengths and (len(lengths) > 1 or not next(iter(lengths)).isdigit()):
        field = "content-length"
        message = f"content-length: {', '.join(sorted(lengths))!r} is not one byte count"
    else:
        field = "request"
        message = "request: not a valid HTTP/1.1 request (request line, header or body framing)"
    return ErrorBody(error=ErrorDetail(status=400, field=field, message=message)).model_dump_json().encode()


def _send_400(self, msg: str) -> None:
    body = framing_error(getattr(self, _RECEIVED, b""))
    content = [b"HTTP/1.1 400 Bad Request\r\n"]
    for name, value in self.server_state.default_headers:
        content += [name, b": ", value, b"\r\n"]
    content += [
        b"content-type: application/json\r\n",
        b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
        b"connection: close\r\n",
        b"\r\n",
        body,
    ]
    self.transport.write(b"".join(content))
    self.transport.close()


def _remembering(data_received):
    def wrapped(self, data: bytes) -> None:
        setattr(self, _RECEIVED, data)
        data_received(self, data)

    wrapped.__wrapped__ = data_received
    return wrapped


def json_framing_errors() -> list:
    """Serve's proxy callback: patch uvicorn's HTTP/1.1 protocols once; no middlewares."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    protocols = [H11Protocol]
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        protocols.append(HttpToolsProtocol)
    except ImportError:  # httptools is optional in uvicorn; without it, h11 serves
        pass
    for protocol in protocols:
        if not hasattr(protocol.data_received, "__wrapped__"):
            protocol.data_received = _remembering(protocol.data_received)
        protocol.send_400_response = _send_400
    return []
