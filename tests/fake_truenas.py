"""A fake TrueNAS middleware: JSON-RPC 2.0 over a WebSocket at ``/api/current``, on 127.0.0.1.

Shaped from truenas/middleware: api/base/server/ws_handler/rpc.py (requests, results, errors
``{"code", "message", "data": {"error", "errname", "reason", ...}}``: -32601 "Method does not
exist", -32602 "Invalid params", -32001 "Method call error"), plugins/auth.py
(``auth.login_with_api_key`` answers false for an unknown key; other calls before a login fail
with ENOTAUTHENTICATED), plugins/pool_/snapshot.py (``pool.snapshot.query`` with
``query-filters`` and ``extra.holds``/``extra.properties``), ``replication.query``
(``state.last_snapshot``). Before 25.10 the snapshot methods are ``zfs.snapshot.*``:
``version=(25, 4)``. Where the versions differ (tags TS-25.04.2.6, TS-25.10.6, TS-26.0.0-BETA.3):

* ``holds``: every hold tag up to 25.10 (libzfs ``snapshots_serialized``); from 26.0 only
  ``{"truenas": 1}`` or ``{}`` (pool_/snapshot.py ``_transform_snapshot_entry``). ``userrefs``
  (asked in ``extra.properties``) counts the holds of any tag in every version.
* deleting a held snapshot: up to 25.10 a call error (-32001) with errno EFAULT and reason
  ``[EFAULT] pool or dataset is busy`` (zfs_/snapshot.py ``delete``: ``CallError(str(e))`` of the
  libzfs error); from 26.0 an invalid-params error (-32602, errno EINVAL) whose reason is
  ``[EBUSY] zfs.resource.snapshot.destroy: ...`` (zfs/snapshot_crud.py ``destroy``,
  ``ValidationError``, rendered by ws_handler/rpc.py). ``defer`` deletes it once released.

``hold_on_delete``: snapshot id -> tag, a hold someone places between the query and the delete;
``lose_after_deletes``: after that many deletions the next one is done but its answer is lost
(the connection closes).

Faults: ``fault`` = "garbage" (a frame that is not JSON), "slow" (no answer for
``slow_seconds``), "close" (drops the connection), "refuse" (handshake answered 403). The fake also
pushes a notification before each answer, which clients must skip.
"""

from __future__ import annotations

import asyncio
import errno
import http
import json
import threading

import websockets

API_KEY = "7-FakeTrueNasApiKeyForTheRecoveryTests0123456789abcdef"
ENOTAUTHENTICATED = 207


class FakeTrueNAS:
    def __init__(self, version=(25, 10)):
        self.version = version
        self.snapshots = {}  # id -> entry
        self.replication = []
        self.deleted = []
        self.calls = []
        self.fault = None
        self.hold_on_delete = {}
        self.lose_after_deletes = None
        self.slow_seconds = 5.0
        self.loop = None
        self.port = None
        self.thread = None
        self.stopped = None

    @property
    def namespace(self) -> str:
        return "pool.snapshot" if self.version >= (25, 10) else "zfs.snapshot"

    def add_snapshot(self, dataset: str, name: str, created: int, txg: int, held: bool = False, tags: tuple = ()):
        """``held``: the ``truenas`` hold tag (what the UI sets); ``tags``: other tags (``zfs hold keep``)."""
        snapshot_id = f"{dataset}@{name}"
        self.snapshots[snapshot_id] = {
            "id": snapshot_id, "name": snapshot_id, "pool": dataset.split("/")[0], "type": "SNAPSHOT", "snapshot_name": name,
            "dataset": dataset, "createtxg": str(txg), "tags": (["truenas"] if held else []) + list(tags),
            "properties": {"creation": {"value": str(created), "rawvalue": str(created), "source": "NONE", "parsed": created}}}

    def add_replication(self, name: str, sources: list[str], last_snapshot: str | None, recursive: bool = False):
        self.replication.append({"id": len(self.replication) + 1, "name": name, "direction": "PUSH", "transport": "SSH",
                                 "source_datasets": sources, "recursive": recursive, "exclude": [], "enabled": True,
                                 "state": {"state": "FINISHED", "last_snapshot": last_snapshot}})

    def _query(self, params):
        filters = params[0] if params else []
        options = params[1] if len(params) > 1 else {}
        extra = options.get("extra", {})
        wanted = extra.get("properties", [])
        out = []
        for entry in self.snapshots.values():
            if all(op == "=" and entry.get(field) == value for field, op, value in filters):
                item = {k: v for k, v in entry.items() if k not in ("tags", "properties")}
                if extra.get("holds"):
                    if self.version >= (26, 0):
                        item["holds"] = {"truenas": 1} if "truenas" in entry["tags"] else {}
                    else:
                        item["holds"] = {tag: 1 for tag in entry["tags"]}
                item["properties"] = {k: v for k, v in entry["properties"].items() if k in wanted}
                if "userrefs" in wanted:
                    refs = len(entry["tags"])
                    item["properties"]["userrefs"] = {"value": str(refs), "rawvalue": str(refs), "source": "NONE", "parsed": refs}
                out.append(item)
        return out

    def _delete(self, params):
        snapshot_id = params[0]
        options = params[1] if len(params) > 1 else {}
        if snapshot_id not in self.snapshots:
            raise CallError(errno.ENOENT, f"[ENOENT] {snapshot_id} not found")
        if snapshot_id in self.hold_on_delete:
            self.snapshots[snapshot_id]["tags"].append(self.hold_on_delete.pop(snapshot_id))
        if self.snapshots[snapshot_id]["tags"] and not options.get("defer"):
            if self.version >= (26, 0):  # the text after the prefix is truenas_pylibzfs', not in the middleware
                message = f"cannot destroy snapshot {snapshot_id}: it has holds"
                raise InvalidParams(f"[EBUSY] zfs.resource.snapshot.destroy: {message}",
                                    [["zfs.resource.snapshot.destroy", message, errno.EBUSY]])
            raise CallError(errno.EFAULT, "[EFAULT] pool or dataset is busy")
        del self.snapshots[snapshot_id]
        self.deleted.append(snapshot_id)
        return True

    def dispatch(self, session: dict, method: str, params: list):
        if method == "auth.login_with_api_key":
            session["authenticated"] = params == [API_KEY]
            return session["authenticated"]
        known = {f"{self.namespace}.query": self._query, f"{self.namespace}.delete": self._delete,
                 "replication.query": lambda p: [dict(t) for t in self.replication]}
        if method not in known:
            raise MethodNotFound()
        if not session.get("authenticated"):
            raise CallError(ENOTAUTHENTICATED, "Not authenticated")
        return known[method](params)

    async def _handler(self, ws, path):
        session = {}
        async for raw in ws:
            message = json.loads(raw)
            self.calls.append((message.get("method"), message.get("params")))
            if self.fault == "close":
                await ws.close()
                return
            if self.fault == "slow":
                await asyncio.sleep(self.slow_seconds)
            if self.fault == "garbage":
                await ws.send("<html>502 Bad Gateway</html>")
                continue
            await ws.send(json.dumps({"jsonrpc": "2.0", "method": "collection_update",
                                      "params": {"msg": "changed", "collection": "alert.list"}}))
            reply = {"jsonrpc": "2.0", "id": message.get("id")}
            try:
                reply["result"] = self.dispatch(session, message["method"], message.get("params", []))
            except MethodNotFound:
                reply["error"] = {"code": -32601, "message": "Method does not exist"}
            except InvalidParams as exc:
                reply["error"] = {"code": -32602, "message": "Invalid params",
                                  "data": {"error": errno.EINVAL, "errname": "EINVAL", "reason": exc.reason, "trace": None,
                                           "extra": exc.extra}}
            except CallError as exc:
                reply["error"] = {"code": -32001, "message": "Method call error",
                                  "data": {"error": exc.errno, "errname": errno.errorcode.get(exc.errno, "ENOTAUTHENTICATED"),
                                           "reason": exc.reason, "trace": None, "extra": None}}
            if message.get("method", "").endswith("snapshot.delete") and self.lose_after_deletes is not None \
                    and len(self.deleted) > self.lose_after_deletes:
                self.lose_after_deletes = None
                await ws.close()  # the deletion happened; its answer never arrives
                return
            await ws.send(json.dumps(reply))

    async def _process_request(self, path, headers):
        if path != "/api/current":
            return (http.HTTPStatus.NOT_FOUND, [], b"not found\n")
        if self.fault == "refuse":
            return (http.HTTPStatus.FORBIDDEN, [], b"forbidden\n")
        return None

    def start(self) -> int:
        ready = threading.Event()

        async def main():
            self.stopped = asyncio.Event()
            async with websockets.serve(self._handler, "127.0.0.1", 0, process_request=self._process_request) as server:
                self.port = server.sockets[0].getsockname()[1]
                ready.set()
                await self.stopped.wait()

        def run():
            self.loop = asyncio.new_event_loop()
            self.loop.run_until_complete(main())
            self.loop.close()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake TrueNAS did not start")
        return self.port

    def stop(self):
        if self.loop is not None and self.stopped is not None:
            self.loop.call_soon_threadsafe(self.stopped.set)
            self.thread.join(10)
            self.loop = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/current"


class MethodNotFound(Exception):
    pass


class CallError(Exception):
    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.errno, self.reason = code, reason


class InvalidParams(Exception):
    """A middleware ValidationError: JSON-RPC -32602 with errno EINVAL and the errors in ``extra``."""

    def __init__(self, reason: str, extra: list):
        super().__init__(reason)
        self.reason, self.extra = reason, extra
