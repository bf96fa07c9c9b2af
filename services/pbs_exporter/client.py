"""GET requests against the PBS REST API, each failure a ``PbsError`` of one kind."""

import http.client
import json
import ssl
from urllib.parse import urlencode

from .problems import Cancelled, PbsError


class PbsClient:
    """GET requests against /api2/json, returning the ``data`` member."""

    def __init__(self, pbs, token, timeout, ssl_context, cancel):
        self.scheme, self.host, self.port, path = pbs
        self.prefix = path + "/api2/json"
        self.headers = {"Authorization": f"PBSAPIToken={token}",
                        "Accept": "application/json"}
        self.timeout = timeout
        self.ssl_context = ssl_context
        self.cancel = cancel

    def get(self, path, params=None):
        if self.cancel.is_set():
            raise Cancelled()
        target = self.prefix + path
        if params:
            target += "?" + urlencode(params, doseq=True)
        if self.scheme == "https":
            conn = http.client.HTTPSConnection(
                self.host, self.port, timeout=self.timeout,
                context=self.ssl_context)
        else:
            conn = http.client.HTTPConnection(self.host, self.port,
                                              timeout=self.timeout)
        try:
            conn.request("GET", target, headers=self.headers)
            response = conn.getresponse()
            body = response.read()
        except TimeoutError:
            raise PbsError("timeout", f"GET {path}: no answer within "
                           f"{self.timeout:g}s") from None
        except ssl.SSLError as exc:
            raise PbsError("tls", f"GET {path}: TLS: {exc}") from None
        except (OSError, http.client.HTTPException) as exc:
            raise PbsError("connect", f"GET {path}: {exc!r}") from None
        finally:
            conn.close()
        if response.status != 200:
            text = body[:200].decode("utf-8", "replace").strip()
            kind = "auth" if response.status in (401, 403) else "http"
            raise PbsError(kind, f"GET {path}: HTTP {response.status} "
                           f"{response.reason}: {text}", response.status)
        try:
            document = json.loads(body)
        except ValueError as exc:
            raise PbsError("parse", f"GET {path}: not JSON: {exc}") from None
        if not isinstance(document, dict) or "data" not in document:
            raise PbsError("parse", f"GET {path}: no 'data' member")
        return document["data"]

    def get_list(self, path, params=None):
        data = self.get(path, params)
        if not isinstance(data, list):
            raise PbsError("parse", f"GET {path}: 'data' is not a list")
        return data

