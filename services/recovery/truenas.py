"""TrueNAS snapshots through its JSON-RPC 2.0 API over a WebSocket (``wss://<nas>/api/current``).

From truenas/middleware (src/middlewared/middlewared/api/base/server/ws_handler/rpc.py and the
plugins): a request is ``{"jsonrpc": "2.0", "id": n, "method": m, "params": [...]}``, its answer
carries the same id with ``result`` or ``error`` (``code``, ``message``, ``data.reason``); the
server also pushes notifications (no id), which are skipped. ``auth.login_with_api_key`` answers
``false`` for a wrong key. Snapshots are ``pool.snapshot.*`` from 25.10 and ``zfs.snapshot.*``
before (the same arguments); a method the server does not have is error -32601.
``query-options.extra.properties: ["creation", "userrefs"]`` adds each snapshot's creation time
and its number of user holds (``rawvalue``: seconds since the epoch, a count). ``extra.holds``
lists hold tags, but from 26.0 only the ``truenas`` tag (pool_/snapshot.py
``_transform_snapshot_entry``): a ``zfs hold keep`` shows only in ``userrefs``, so a snapshot
counts as held when either says so, and when ``userrefs`` is missing.
Deleting a held snapshot fails: 25.10 answers a call error ``[EFAULT] ... busy`` (libzfs' message
in a CallError), 26.0 an invalid-params error whose reason starts ``[EBUSY]``.
``replication.query`` lists replication tasks with ``state.last_snapshot``: the snapshot the next
incremental send starts from.

The client is websocket-client (Debian: python3-websocket).
"""

from __future__ import annotations

import itertools
import json
import socket
import ssl
from dataclasses import dataclass

import websocket

METHOD_NOT_FOUND = -32601
NAMESPACES = ("pool.snapshot", "zfs.snapshot")


class TrueNasError(Exception):
    def __init__(self, kind: str, message: str):
        super().__init__(f"truenas: {message}")
        self.kind = kind


class RpcError(TrueNasError):
    def __init__(self, method: str, error: dict):
        reason = (error.get("data") or {}).get("reason") if isinstance(error.get("data"), dict) else None
        super().__init__("rpc", f"{method}: {error.get('message')} ({error.get('code')}){': ' + reason if reason else ''}")
        self.code = error.get("code")
        self.reason = reason if isinstance(reason, str) else ""

    @property
    def busy(self) -> bool:
        """The snapshot is held or in use (25.10: ``[EFAULT] ... busy``; 26.0: ``[EBUSY] ...``)."""
        return self.reason.startswith("[EBUSY]") or (self.reason.startswith("[EFAULT]") and "busy" in self.reason)


@dataclass(frozen=True)
class Snapshot:
    id: str
    dataset: str
    created: int
    createtxg: int
    held: bool


class TrueNas:
    def __init__(self, url: str, api_key: str, timeout: float, verify_tls: bool = True, ca_file: str | None = None):
        self.url = url
        self.api_key = api_key
        self.timeout = timeout
        self.sslopt = {"cert_reqs": ssl.CERT_REQUIRED if verify_tls else ssl.CERT_NONE, "check_hostname": verify_tls}
        if ca_file:
            self.sslopt["ca_certs"] = ca_file
        self.ids = itertools.count(1)
        self.ws = None
        self.namespace = None

    def __enter__(self) -> "TrueNas":
        try:
            self.ws = websocket.create_connection(self.url, timeout=self.timeout, sslopt=self.sslopt)
        except websocket.WebSocketBadStatusException as exc:
            raise TrueNasError("http", f"WebSocket handshake with {self.url} refused: HTTP {exc.status_code}") from None
        except (socket.timeout, websocket.WebSocketTimeoutException):
            raise TrueNasError("timeout", f"no WebSocket handshake from {self.url} within {self.timeout:g}s") from None
        except ssl.SSLError as exc:
            raise TrueNasError("tls", f"TLS with {self.url}: {exc.reason or exc}") from None
        except (OSError, websocket.WebSocketException) as exc:
            raise TrueNasError("connect", f"cannot connect to {self.url}: {exc}") from None
        if self.call("auth.login_with_api_key", [self.api_key]) is not True:
            self.close()
            raise TrueNasError("auth", "auth.login_with_api_key refused the API key (wrong or revoked key?)")
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.ws is not None:
            try:
                self.ws.close()
            except (OSError, websocket.WebSocketException):
                pass
            self.ws = None

    def call(self, method: str, params: list):
        request_id = next(self.ids)
        try:
            self.ws.send(json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}))
            for _ in range(1000):  # bounded: notifications may come before the answer
                raw = self.ws.recv()
                try:
                    message = json.loads(raw)
                except ValueError:
                    raise TrueNasError("parse", f"{method}: answer is not JSON: {str(raw)[:80]!r}") from None
                if not isinstance(message, dict) or message.get("id") != request_id:
                    continue
                if "error" in message:
                    raise RpcError(method, message["error"] if isinstance(message["error"], dict) else {"message": message["error"]})
                if "result" not in message:
                    raise TrueNasError("shape", f"{method}: answer has neither result nor error")
                return message["result"]
            raise TrueNasError("shape", f"{method}: no answer among 1000 messages")
        except (socket.timeout, websocket.WebSocketTimeoutException):
            raise TrueNasError("timeout", f"{method}: no answer within {self.timeout:g}s") from None
        except (OSError, websocket.WebSocketException) as exc:
            raise TrueNasError("connect", f"{method}: connection lost: {exc}") from None

    def _snapshot_call(self, verb: str, params: list):
        """``pool.snapshot.<verb>``, or ``zfs.snapshot.<verb>`` on TrueNAS before 25.10."""
        for namespace in ([self.namespace] if self.namespace else NAMESPACES):
            try:
                result = self.call(f"{namespace}.{verb}", params)
            except RpcError as exc:
                if exc.code == METHOD_NOT_FOUND and namespace != NAMESPACES[-1] and not self.namespace:
                    continue
                raise
            self.namespace = namespace
            return result
        raise AssertionError("unreachable")

    def snapshots(self, dataset: str) -> list[Snapshot]:
        entries = self._snapshot_call("query", [[["dataset", "=", dataset]],
                                                {"extra": {"holds": True, "properties": ["creation", "userrefs"]}}])
        if not isinstance(entries, list):
            raise TrueNasError("shape", f"snapshot query: result is {type(entries).__name__}, not a list")
        out = []
        for entry in entries:
            try:
                created = int(entry["properties"]["creation"]["rawvalue"])
                out.append(Snapshot(entry["id"], entry["dataset"], created, int(entry["createtxg"]),
                                    bool(entry.get("holds")) or user_holds(entry) != 0))
            except (KeyError, TypeError, ValueError, AttributeError):
                raise TrueNasError("shape", f"snapshot query: entry without id, dataset, createtxg or creation: {str(entry)[:120]}") from None
        return out

    def replication_tasks(self) -> list[dict]:
        tasks = self.call("replication.query", [])
        if not isinstance(tasks, list):
            raise TrueNasError("shape", "replication.query: result is not a list")
        return tasks

    def delete_snapshot(self, snapshot_id: str) -> None:
        if self._snapshot_call("delete", [snapshot_id]) is not True:
            raise TrueNasError("shape", f"snapshot delete {snapshot_id}: result is not true")


def user_holds(entry: dict) -> int | None:
    """A snapshot's ``userrefs`` (its number of holds of any tag), None when the answer lacks it."""
    try:
        return int(entry["properties"]["userrefs"]["rawvalue"])
    except (KeyError, TypeError, ValueError):
        return None


def covers(task: dict, dataset: str) -> bool:
    """Whether a PUSH replication task sends ``dataset``: named, or under a recursive source."""
    if task.get("direction", "PUSH") != "PUSH" or not task.get("enabled", True):
        return False
    if any(dataset == pattern or dataset.startswith(pattern + "/") for pattern in task.get("exclude") or []):
        return False
    return any(dataset == source or (task.get("recursive") and dataset.startswith(source + "/"))
               for source in task.get("source_datasets") or [])


def prune_plan(snapshots: list[Snapshot], tasks: list[dict], dataset: str, older_than: int, keep_newest: int) -> tuple[list[Snapshot], dict[str, str]]:
    """(snapshots to delete, {snapshot id: why it is kept}).

    Kept: the newest ``keep_newest``; any with a hold; the base of each replication task's next
    incremental send and everything newer (or all of them while such a task has not sent one
    yet); any not older than ``older_than`` (seconds since the epoch)."""
    ordered = sorted((s for s in snapshots if s.dataset == dataset), key=lambda s: s.createtxg, reverse=True)
    kept: dict[str, str] = {}
    for snapshot in ordered[:keep_newest]:
        kept[snapshot.id] = f"one of the newest {keep_newest}"
    txg = {s.id: s.createtxg for s in ordered}
    for task in tasks:
        if not covers(task, dataset):
            continue
        name = task.get("name") or task.get("id")
        last = (task.get("state") or {}).get("last_snapshot") or ""
        # A recursive task names the last snapshot it sent of any dataset; they share the name.
        base = f"{dataset}@{last.split('@', 1)[1]}" if "@" in last else ""
        if base not in txg:
            for snapshot in ordered:  # no base on this dataset yet: replication needs every snapshot
                kept.setdefault(snapshot.id, f"replication task {name} has not sent this dataset yet")
            continue
        for snapshot in ordered:
            if snapshot.createtxg >= txg[base]:
                kept.setdefault(snapshot.id, f"replication task {name} still needs it (base {base})")
    for snapshot in ordered:
        if snapshot.held:
            kept.setdefault(snapshot.id, "has a hold")
        elif snapshot.created >= older_than:
            kept.setdefault(snapshot.id, "within retention")
    return [s for s in ordered if s.id not in kept], kept
