"""A small client of Prometheus' HTTP API (/api/v1/query, /api/v1/query_range), standard library only.

Every way Prometheus can fail the report (no answer, an HTTP error, an API error, something
that is not Prometheus at that URL) becomes one ReportError line naming the URL and the cause.
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from . import PrometheusUnreachable, ReportError

# Prometheus refuses a range query of more than 11,000 points per series.
MAX_POINTS = 11_000


@dataclass(frozen=True)
class Series:
    labels: dict[str, str]
    samples: list[tuple[float, float]]  # (unix time, value), ascending


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Prometheus:
    def __init__(self, url: str, timeout: float = 60.0):
        if not url.startswith(("http://", "https://")):
            raise ReportError(f"Prometheus URL {url!r} must start with http:// or https://", 2)
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _call(self, path: str, params: dict[str, str]) -> dict:
        body = urllib.parse.urlencode(params).encode()
        request = urllib.request.Request(f"{self.url}{path}", data=body, method="POST",
                                         headers={"Content-Type": "application/x-www-form-urlencoded"})
        where = f"Prometheus at {self.url}"
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw, status, kind = response.read(), response.status, response.headers.get_content_type()
        except urllib.error.HTTPError as exc:
            raw, status, kind = exc.read(), exc.code, exc.headers.get_content_type()
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, (socket.timeout, TimeoutError)):
                raise PrometheusUnreachable(f"{where} did not answer within {self.timeout:g} s") from None
            text = getattr(reason, "strerror", None) or str(reason)
            raise PrometheusUnreachable(f"cannot reach {where}: {_one_line(text)}") from None
        except (TimeoutError, socket.timeout):
            raise PrometheusUnreachable(f"{where} did not answer within {self.timeout:g} s") from None
        except (ConnectionError, OSError) as exc:
            raise PrometheusUnreachable(f"cannot reach {where}: {_one_line(exc.strerror or str(exc))}") from None
        try:
            doc = json.loads(raw)
        except ValueError:
            doc = None
        if not isinstance(doc, dict) or "status" not in doc:
            raise ReportError(f"{where} answered HTTP {status} ({kind}) that is not Prometheus' API: "
                              f"{_one_line(raw.decode(errors='replace')) or 'empty body'}")
        if doc["status"] != "success":
            raise ReportError(f"{where} answered HTTP {status}: {doc.get('errorType', 'error')}: "
                              f"{_one_line(str(doc.get('error', '')))}")
        data = doc.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("result"), list):
            raise ReportError(f"{where} answered HTTP {status} without a result")
        return data

    def _series(self, data: dict) -> list[Series]:
        out = []
        try:
            for item in data["result"]:
                if "values" in item:
                    samples = [(float(t), float(v)) for t, v in item["values"]]
                else:
                    t, v = item["value"]
                    samples = [(float(t), float(v))]
                out.append(Series(dict(item.get("metric", {})), samples))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ReportError(f"Prometheus at {self.url} answered a result that is not series of samples "
                              f"({type(exc).__name__}: {_one_line(str(exc))})") from None
        return out

    def instant(self, query: str, at: float) -> list[Series]:
        """The query evaluated at one time; a range selector gives the raw samples of its window."""
        return self._series(self._call("/api/v1/query", {"query": query, "time": f"{at:.3f}"}))

    def range(self, query: str, start: float, end: float, step: float) -> list[Series]:
        """query_range over [start, end], split into requests Prometheus accepts, series merged by labels."""
        merged: dict[tuple, Series] = {}
        chunk = step * (MAX_POINTS - 1)
        t = start
        while t <= end:
            stop = min(end, t + chunk)
            data = self._call("/api/v1/query_range", {
                "query": query, "start": f"{t:.3f}", "end": f"{stop:.3f}", "step": f"{step:g}"})
            for series in self._series(data):
                key = tuple(sorted(series.labels.items()))
                if key in merged:
                    merged[key].samples.extend(series.samples)
                else:
                    merged[key] = series
            t = stop + step
        return list(merged.values())
