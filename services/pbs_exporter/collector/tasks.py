"""The task list of the PBS node: which tasks a poll reads.

Reading the task list
=====================

PBS lists the running tasks first, then its task archive in the order tasks
were archived, newest first (proxmox-rest-server worker_task.rs,
``TaskListInfoIterator``).  Its ``since`` parameter stops that listing at the
first finished task that *ended* before ``since``.  A task whose process died
(a crash, a power loss) is archived only when PBS notices, with status
``unknown`` and the time of its last log line as end time, which can be far
older than the tasks archived just before it; ``since`` would stop at it and
never list them.  So the exporter pages with ``start``/``limit`` instead and
stops at the first task that ended before the cursor with a real status; like
``since``, it skips tasks that started before the cursor, except the running
tasks it is waiting for.  A warm poll reads only the last ``--overlap``
seconds of tasks, not the whole history.
"""

from urllib.parse import quote

from ..problems import PbsError
from ..shapes import ended_before, is_int

TASK_PAGE = 500
TASK_FIRST_PAGE = 50
TASK_MAX_PAGES = 1000
LOOKUP_PAGE = 100
LOOKUP_MAX_PAGES = 10

class TaskReader:
    """Which tasks to read from ``/nodes/{node}/tasks`` (src/api2/node/
    tasks.rs list_tasks: running first, then the archive newest first)."""

    def __init__(self, client, node):
        self.client = client
        self.path = f"/nodes/{quote(node)}/tasks"

    def running(self):
        # PBS reads only its file of active tasks for this.
        return self.client.get_list(self.path, {
            "running": 1, "start": 0, "limit": TASK_PAGE})

    def recent(self, cursor, waiting):
        """Entries of the tasks that started at or after ``cursor``, and of
        those in ``waiting`` (running ones the ledger waits for)."""
        entries, seen, start, limit = [], set(), 0, TASK_FIRST_PAGE
        for _ in range(TASK_MAX_PAGES):
            # A warm poll needs only the last --overlap seconds: small first
            # pages, then full ones for a long history.
            page = self.client.get_list(self.path, {
                "start": start, "limit": limit})
            for raw in page:
                if ended_before(raw, cursor):
                    return entries  # the rest of the archive is older
                if isinstance(raw, dict) and is_int(raw.get("starttime")) \
                        and raw["starttime"] < cursor \
                        and raw.get("upid") not in waiting:
                    continue  # counted before, or before the lookback
                entries.append(raw)
            if len(page) < limit:
                return entries
            upids = {t.get("upid") for t in page if isinstance(t, dict)}
            if upids <= seen:  # the API ignored 'start': stop, don't loop
                raise PbsError("parse", "task list paging returns the same "
                               "tasks again")
            seen |= upids
            start += limit
            limit = min(limit * 4, TASK_PAGE)
        raise PbsError("parse", f"task list has more than {start} tasks "
                       f"since {cursor}")

    def find(self, upid, starttime):
        """The entry of one task that started before the cursor, or None."""
        for page_no in range(LOOKUP_MAX_PAGES):
            page = self.client.get_list(self.path, {
                "until": starttime, "start": page_no * LOOKUP_PAGE,
                "limit": LOOKUP_PAGE})
            for raw in page:
                if isinstance(raw, dict) and raw.get("upid") == upid:
                    return raw
            # Archived after it ended: past its start, it is not coming.
            if len(page) < LOOKUP_PAGE or ended_before(page[-1], starttime):
                return None
        return None

