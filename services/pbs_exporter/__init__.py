"""Prometheus exporter for Proxmox Backup Server job results.

PBS has no Prometheus endpoint of its own, and the stack's recording rule
``job:backup_success:ratio`` needs per-job attempt and success counters.  This
process reads the PBS REST API (``/api2/json``) with an API token and serves
``/metrics``.  It needs only the Python standard library and
``prometheus_client`` (Debian: python3-prometheus-client, 0.16 APIs only), and
its metric names come from contracts/metrics.py.  cloud-init ships it, with
that module, as one zipapp (model/cloud_init.py).  Its parts, in the order a
poll runs through them:

* ``config`` - the command line;
* ``client`` - GET requests against the API;
* ``collector.tasks`` - which tasks to read (running, recent, one lost task);
* ``collector.jobs`` - the configured jobs and their status; the job series;
* ``shapes`` - the forms PBS writes, and which job a task belongs to;
* ``ledger`` and ``state`` - counting each task once, across restarts;
* ``collector.datastores`` - usage and snapshot counts;
* ``problems`` - errors, error counters and one log line per problem;
* ``collector`` - the families a scrape serves, in order;
* ``exporter`` - one poll, in order; ``server`` - /metrics; ``cli`` - main.

Design
======

Polling runs in the main thread on a fixed interval (``--interval``); the
HTTP server only serves the metric families that the last poll published,
rendered once.  A scrape therefore never waits for PBS: when PBS hangs,
Prometheus still gets an answer within milliseconds saying ``pbs_up 0``
instead of timing out and reporting the exporter itself as down.  The price is that values are up to
one interval old, which ``pbs_exporter_last_scrape_timestamp_seconds`` shows.

Each poll asks PBS for:

* ``GET /nodes/{node}/tasks?running=1`` - the running tasks, which feed
  ``pbs_job_running``;
* ``GET /nodes/{node}/tasks?start=&limit=`` - the task list, paged, down to
  the first task that ended before the cursor (collector/tasks.py);
* ``GET /admin/sync?sync-direction=all``, ``/admin/verify``, ``/admin/prune``
  and ``/admin/gc`` - the configured jobs with their status.  They say more
  than the task list: jobs that never ran yet (their counters start at 0, so
  ``rate()`` sees their first run), the local datastore of a sync job, which
  job ran a prune task, the next scheduled run, and the last run even after
  its task has left the task history.  PBS before 3.3 has no push sync jobs
  and answers ``sync-direction`` with 400: then the exporter asks without it
  (and tries again hourly, in case PBS was upgraded).  PBS before 3.2 has no
  ``/admin/gc``: then ``/admin/datastore/{store}/gc`` per datastore;
* ``GET /status/datastore-usage`` - size/used/available per datastore, and
  every ``--snapshot-interval`` seconds ``/admin/datastore/{store}/namespace``
  plus ``.../snapshots?ns=`` for snapshot counts (listing snapshots is the
  expensive call on a big datastore, hence the slower cadence).
"""
