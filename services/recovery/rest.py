"""HTTP requests to the APIs the service calls, with one error type that says what went wrong.

Every failure becomes an ``ApiError`` with a ``kind`` (connect, timeout, tls, auth, forbidden,
http, parse, shape) and a message that names the API and the request but never a secret
(a Mattermost webhook URL is one, so callers pass a ``label`` to print instead of the URL).
"""

from __future__ import annotations

import http.client
import json
import ssl
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

MAX_BODY = 4 * 2**20


class ApiError(Exception):
    def __init__(self, api: str, kind: str, message: str, status: int | None = None):
        super().__init__(f"{api}: {message}")
        self.api = api
        self.kind = kind
        self.status = status

    @property
    def lost(self) -> bool:
        """The request may have been carried out: no answer came, or one that cannot be read."""
        return self.kind in ("timeout", "parse", "shape") or (self.kind == "connect" and "reset" in str(self).lower())


def ssl_context(verify: bool, ca_file: str | None) -> ssl.SSLContext:
    if not verify:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    return ssl.create_default_context(cafile=ca_file)


@dataclass
class Endpoint:
    """One API's base URL and how to reach it."""

    api: str
    base_url: str
    timeout: float
    context: ssl.SSLContext | None = None

    def request(self, method: str, path: str, *, headers: dict[str, str], params: dict | None = None,
                body: bytes | None = None, content_type: str | None = None, label: str | None = None) -> tuple[int, bytes]:
        url = urlsplit(self.base_url.rstrip("/") + path)
        target = url.path + ("?" + urlencode(params, doseq=True) if params else "")
        what = f"{method} {label or url.path}"
        if url.scheme == "https":
            conn = http.client.HTTPSConnection(url.hostname, url.port, timeout=self.timeout, context=self.context)
        else:
            conn = http.client.HTTPConnection(url.hostname, url.port, timeout=self.timeout)
        headers = dict(headers)
        if content_type:
            headers["Content-Type"] = content_type
        try:
            conn.request(method, target, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read(MAX_BODY)
        except TimeoutError:
            raise ApiError(self.api, "timeout", f"{what}: no answer within {self.timeout:g}s") from None
        except ssl.SSLError as exc:
            raise ApiError(self.api, "tls", f"{what}: TLS: {exc.reason or exc}") from None
        except (OSError, http.client.HTTPException) as exc:
            raise ApiError(self.api, "connect", f"{what}: {exc.__class__.__name__}: {exc}") from None
        finally:
            conn.close()
        if response.status >= 300:
            text = error_text(response.reason, data)
            kind = {401: "auth", 403: "forbidden"}.get(response.status, "http")
            hint = {401: " (wrong or expired token?)", 403: " (the token lacks a privilege?)"}.get(response.status, "")
            raise ApiError(self.api, kind, f"{what}: HTTP {response.status}: {text}{hint}", response.status)
        return response.status, data

    def json(self, method: str, path: str, *, headers: dict[str, str], params: dict | None = None,
             payload: object = None, form: dict | None = None, label: str | None = None) -> object:
        body, content_type = None, None
        if payload is not None:
            body, content_type = json.dumps(payload).encode(), "application/json"
        elif form is not None:
            body, content_type = urlencode(form, doseq=True).encode(), "application/x-www-form-urlencoded"
        _, data = self.request(method, path, headers={**headers, "Accept": "application/json"}, params=params,
                               body=body, content_type=content_type, label=label)
        try:
            return json.loads(data) if data.strip() else None
        except ValueError as exc:
            raise ApiError(self.api, "parse", f"{method} {label or path}: answer is not JSON ({exc})") from None


def error_text(reason: str, body: bytes) -> str:
    """What an error answer says. PVE puts its message in the status line and answers
    ``{"data": null}`` (pve-http-server before 5.2 / PVE 8.3), then also in ``message``, with
    ``errors`` per parameter for a 400; PBS sends the message as the body."""
    try:
        document = json.loads(body) if body.strip() else None
    except ValueError:
        document = None
    if not isinstance(document, dict):
        return body[:300].decode("utf-8", "replace").strip() or reason
    message = document.get("message")
    text = message.strip() if isinstance(message, str) and message.strip() else reason
    errors = document.get("errors")
    if isinstance(errors, dict) and errors:
        text += " (" + "; ".join(f"{key}: {str(value).strip()}" for key, value in sorted(errors.items())) + ")"
    return text[:600]


def data_member(api: str, what: str, document: object, kind: type | tuple[type, ...]):
    """The ``data`` member of a Proxmox answer, checked for its type."""
    if not isinstance(document, dict) or "data" not in document:
        raise ApiError(api, "shape", f"{what}: answer has no 'data' member")
    data = document["data"]
    if not isinstance(data, kind):
        raise ApiError(api, "shape", f"{what}: 'data' is {type(data).__name__}, not {getattr(kind, '__name__', kind)}")
    return data


def read_secret(path: str) -> str:
    """A secret from its file (one line); the error names the file, never the content."""
    try:
        with open(path, encoding="utf-8") as handle:
            value = handle.read().strip()
    except OSError as exc:
        raise ValueError(f"cannot read secret file {path}: {exc.strerror}") from None
    if not value or "\n" in value:
        raise ValueError(f"secret file {path} must hold exactly one non-empty line")
    return value
