"""Writing the report's files without leaving half of one, keeping the archive, telling the backup room."""

from __future__ import annotations

import json
import os
import re
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from . import ReportError
from .quarter import Quarter
from .settings import Announce

REPORT_FILE = re.compile(r"^pbs-(\d{4}Q[1-4])\.(pdf|json|csv)$")
SUFFIXES = ("pdf", "json", "csv")


def report_paths(directory: Path, quarter: Quarter) -> dict[str, Path]:
    return {suffix: directory / f"pbs-{quarter}.{suffix}" for suffix in SUFFIXES}


def write_all(directory: Path, quarter: Quarter, writers: dict[str, Callable[[Path], None]]) -> dict[str, Path]:
    """Each file is written to a temporary name beside its target, then all are renamed into place:
    a failure leaves the previous files (if any) as they were and no partial file behind."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"cannot create {directory}: {exc.strerror}") from None
    targets = report_paths(directory, quarter)
    temps: dict[str, Path] = {}
    try:
        for suffix, write in writers.items():
            fd, name = tempfile.mkstemp(prefix=f".pbs-{quarter}.", suffix=f".{suffix}.tmp", dir=directory)
            os.close(fd)
            temps[suffix] = Path(name)
            write(temps[suffix])
            with open(temps[suffix], "rb+") as f:
                os.fsync(f.fileno())
            os.chmod(temps[suffix], 0o644)
        for suffix, temp in temps.items():
            os.replace(temp, targets[suffix])
    except OSError as exc:
        raise ReportError(f"cannot write the report to {directory}: {exc.strerror or exc}") from None
    finally:
        for temp in temps.values():
            if temp.exists():
                temp.unlink()
    return {s: targets[s] for s in writers}


def prune(directory: Path, newest: Quarter, retention_years: int) -> list[Path]:
    """Delete archived reports of quarters more than `retention_years` before `newest`.

    Only files named like the report's own (pbs-<year>Q<n>.pdf/json/csv) are ever touched.
    """
    oldest_kept = Quarter(newest.year - retention_years, newest.number).next()
    removed = []
    for path in sorted(directory.iterdir()):
        match = REPORT_FILE.match(path.name)
        if match and path.is_file() and Quarter.parse(match.group(1)) < oldest_kept:
            path.unlink()
            removed.append(path)
    return removed


def announce(settings: Announce, text: str, timeout: float = 15.0) -> None:
    """Post to the Mattermost incoming webhook; the URL (a secret) never appears in an error."""
    try:
        url = Path(settings.webhook_url_file).read_text().strip()
    except OSError as exc:
        raise ReportError(f"cannot read the webhook URL file {settings.webhook_url_file}: {exc.strerror}") from None
    if not url.startswith(("http://", "https://")):
        raise ReportError(f"the webhook URL in {settings.webhook_url_file} is not an http(s) URL")
    payload = {"text": text, "username": settings.username}
    if settings.channel:
        payload["channel"] = settings.channel
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    where = f"the backup room's webhook (from {settings.webhook_url_file})"
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        raise ReportError(f"{where} answered HTTP {exc.code}; the report is archived but not announced") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        text = getattr(reason, "strerror", None) or type(reason).__name__
        raise ReportError(f"cannot reach {where}: {text}; the report is archived but not announced") from None
