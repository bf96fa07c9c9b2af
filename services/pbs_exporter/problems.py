"""What goes wrong, and how the exporter says it: the errors, the log, the error counters."""

import logging

log = logging.getLogger("pbs-job-exporter")

ERROR_KINDS = ("connect", "timeout", "tls", "auth", "http", "parse", "state",
               "clock_skew", "lost_task", "internal")


class ConfigError(Exception):
    """A start-up mistake: reported in one line, exit status 2."""


class PbsError(Exception):
    """A failed PBS API call; ``kind`` is one of ERROR_KINDS."""

    def __init__(self, kind, message, status=None):
        super().__init__(message)
        self.kind = kind
        self.status = status


class Cancelled(Exception):
    """Shutdown was requested while a poll was talking to PBS."""


class Problems:
    """Error counters by kind, and the log: one line when a problem starts or
    changes kind (a PBS going down answers "reset" then "refused": one
    outage, one line), one line when it ends."""

    def __init__(self):
        self.errors = dict.fromkeys(ERROR_KINDS, 0)
        self.logged = {}

    def report(self, source, err, count=True):
        if count:
            self.errors[err.kind] += 1
        if self.logged.get(source) != err.kind:
            log.error("%s: %s", source, err)
            self.logged[source] = err.kind

    def recovered(self, source):
        if self.logged.pop(source, None) is not None:
            log.info("%s: working again", source)

