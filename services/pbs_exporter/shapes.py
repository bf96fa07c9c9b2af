"""The shapes PBS writes (UPIDs, worker ids, task list entries), and which job a task is.

Labels
======

``job_type`` is one of backup, sync, verify, prune, gc.  ``job_id`` and
``datastore`` come from the task's worker type and worker id, in the forms
PBS 3.x writes them (``ns`` is a namespace like ``a/b``, empty for the root
namespace; ``nspath`` is ``ns/a/ns/b``):

==================  ==================================  ==================
worker_type         worker_id                           job_id
==================  ==================================  ==================
backup              ``store:vm/101`` (no namespace)     ``vm/101``, the
                                                        backup group (PBS
                                                        backup tasks carry
                                                        no job id)
syncjob             ``remote:rstore:store:ns:jobid``    ``jobid``
                    (pull and push; remote ``-`` for
                    a local sync)
verificationjob     ``store:jobid``                     ``jobid``
prunejob            ``store`` or ``store:ns``           the prune job, see
                                                        below
garbage_collection  ``store``                           ``store``
sync                ``store``                           ``manual``
prune               ``store:ns:vm/101``, ``store:ns``   ``manual``
verify              ``store`` or ``store:nspath``;      ``manual``
                    ``store:vm/101/65A0B0C0`` (after a
                    backup, datastore ``verify-new``)
verify_group        ``store:nspath/vm/101``             ``manual``
verify_snapshot     ``store:nspath/vm/101/65A0B0C0``    ``manual``
==================  ==================================  ==================

The datastore is the ``store`` part; for sync jobs the job config's ``store``
(the local datastore, for pull and push alike).  Manual runs share one
``manual`` series per datastore and type, so snapshot times never become
label values; "run now" on a configured job is that job's worker type and
counts for the job.  A prune job's worker id names only its datastore and
namespace, so a ``prunejob`` task is matched to its job by these rules, in
order:

1. the job whose status showed the task's UPID as ``last-run-upid``, on this
   poll or an earlier one (PBS sets it when the run starts);
2. the only prune job configured on that datastore and namespace;
3. of several such jobs, those whose last run started at or after the task
   (a job whose latest run is older, or that never ran, cannot have run it):
   the only one, else the first by job id (logged as ambiguous);
4. no such job (deleted, or hidden from the token): ``job_id="unmatched"``.

Other worker types (restores, tape, apt updates...) are not jobs; they are
counted in ``pbs_exporter_tasks_ignored_total{reason="unknown_type"}``, and a
worker id of a job type that matches none of the forms above in
``{reason="malformed"}``.  A task that ended "OK" or "WARNINGS: n" is a
success (warnings are counted separately in ``pbs_job_warning_total``); an
error message or "unknown" is a failure.
"""

import dataclasses
import re

MANUAL = "manual"
UNMATCHED = "unmatched"
MAX_LABEL_LEN = 128

# The forms PBS itself writes, so that "malformed" means "not a PBS shape".
SAFE_ID = r"[A-Za-z0-9_][A-Za-z0-9._\-]*"  # proxmox-schema SAFE_ID_REGEX_STR
NS = rf"(?:{SAFE_ID}/){{0,7}}{SAFE_ID}"  # pbs-api-types lib.rs BACKUP_NS_RE
NS_PATH = rf"(?:ns/{SAFE_ID}/){{0,7}}ns/{SAFE_ID}"  # display_as_path()
GROUP = rf"(?:vm|ct|host)/{SAFE_ID}"  # BACKUP_TYPE_RE "/" BACKUP_ID_RE
# proxmox-schema upid.rs PROXMOX_UPID_REGEX
UPID_RE = re.compile(
    r"UPID:[a-zA-Z0-9](?:[a-zA-Z0-9\-]*[a-zA-Z0-9])?:[0-9A-Fa-f]{8}:"
    r"[0-9A-Fa-f]{8,9}:[0-9A-Fa-f]{8,16}:(?P<starttime>[0-9A-Fa-f]{8}):"
    r"[^:\s]+:[^:\s]*:[^:\s]+:")


def _form(pattern):
    return re.compile(pattern.format(store=rf"(?P<store>{SAFE_ID})",
                                     SAFE_ID=SAFE_ID, NS=NS, NS_PATH=NS_PATH,
                                     GROUP=GROUP))


# worker_type -> (job_type, how the job is named, worker_id form).  Where
# PBS writes each one (proxmox-backup, src/):
WORKER_FORMS = {
    # api2/backup/mod.rs; the namespace is not in it ("FIXME: include
    # namespace here?")
    "backup": ("backup", "group", _form(r"{store}:(?P<group>{GROUP})")),
    # server/sync.rs (3.3, pull and push) / api2/pull.rs (3.2) do_sync_job;
    # one field less before namespaces (PBS < 2.2)
    "syncjob": ("sync", "job", _form(
        r"(?:{SAFE_ID}|-):{SAFE_ID}:{store}(?::(?:{NS})?)?"
        r":(?P<job>{SAFE_ID})")),
    # server/verify_job.rs
    "verificationjob": ("verify", "job", _form(r"{store}:(?P<job>{SAFE_ID})")),
    # server/prune_job.rs do_prune_job
    "prunejob": ("prune", "prune", _form(r"{store}(?::(?P<ns>{NS}))?")),
    # server/gc_job.rs
    "garbage_collection": ("gc", "store", _form(r"{store}")),
    # api2/pull.rs pull (manual sync: "FIXME: add namespace to worker id?")
    "sync": ("sync", MANUAL, _form(r"{store}")),
    # api2/admin/datastore.rs prune (a group) and prune_datastore
    "prune": ("prune", MANUAL, _form(r"{store}:(?:{NS})?(?::{GROUP})?")),
    # api2/admin/datastore.rs verify; before namespaces without the "/";
    # api2/backup/environment.rs verify_after_complete (verify-new): the
    # new snapshot, no namespace
    "verify": ("verify", MANUAL, _form(
        r"{store}(?::(?:{NS_PATH}|{GROUP}/[0-9A-Fa-f]{{8,}}))?")),
    "verify_group": ("verify", MANUAL, _form(
        r"{store}:(?:{NS_PATH})?/?{GROUP}")),
    "verify_snapshot": ("verify", MANUAL, _form(
        r"{store}:(?:{NS_PATH})?/?{GROUP}/[0-9A-Fa-f]{{8,}}")),
}


@dataclasses.dataclass(frozen=True)
class Task:
    upid: str
    worker_type: str
    worker_id: str
    starttime: int
    endtime: object  # int, or None while running
    status: str


def is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def upid_starttime(upid):
    """The start time a UPID carries, or None if it is no UPID."""
    match = UPID_RE.fullmatch(upid) if isinstance(upid, str) else None
    return int(match["starttime"], 16) if match else None


def parse_task(raw):
    """A task list entry (pbs-api-types TaskListItem) as a Task, or None when
    it is malformed."""
    if not isinstance(raw, dict):
        return None
    upid, wtype = raw.get("upid"), raw.get("worker_type")
    wid, start = raw.get("worker_id") or "", raw.get("starttime")
    end, status = raw.get("endtime"), raw.get("status")
    if not (isinstance(upid, str) and upid.startswith("UPID:")
            and isinstance(wtype, str) and isinstance(wid, str)
            and is_int(start) and (end is None or is_int(end))):
        return None
    if end is not None and not isinstance(status, str):
        status = "unknown"
    return Task(upid, wtype, wid, start, end, status or "")


def ended_before(raw, when):
    """True if the entry is a task that really ended before ``when``: not a
    crashed one, whose end time PBS guesses from its last log line."""
    return (isinstance(raw, dict) and is_int(raw.get("endtime"))
            and raw["endtime"] < when and raw.get("status") != "unknown")


def task_succeeded(status):
    return status == "OK" or status.startswith("WARNINGS")


def label_ok(value):
    return bool(value) and len(value) <= MAX_LABEL_LEN and value.isprintable()


def classify(task, catalog, prune_runs):
    """(key, note) of a task: key is (job_type, job_id, datastore), or None
    with note "unknown_type" / "malformed"; with a key, note says when the
    job was a guess ("ambiguous", "unmatched")."""
    known = WORKER_FORMS.get(task.worker_type)
    if known is None:
        return None, "unknown_type"
    job_type, naming, form = known
    match = form.fullmatch(task.worker_id)
    if match is None:
        return None, "malformed"
    store, note = match["store"], None
    if naming == "group":
        job_id = match["group"]
    elif naming == "job":
        job_id = match["job"]
        if job_type == "sync":
            store = catalog.sync_store(job_id) or store
    elif naming == "prune":
        job_id, note = catalog.prune_job(task, store, match["ns"] or "",
                                         prune_runs)
    elif naming == "store":
        job_id = store
    else:
        job_id = MANUAL
    if not (label_ok(store) and label_ok(job_id)):
        return None, "malformed"
    return (job_type, job_id, store), note

