"""The exceptions the engine, the playbooks and the server share."""


class PayloadError(ValueError):
    """A webhook body that is not an Alertmanager v4 notification."""


class Deferred(Exception):
    """The action's node is busy: try the occurrence again later."""


class Interrupted(Exception):
    """The service is stopping; the occurrence continues after the restart."""


class Halted(Exception):
    """The kill switch was engaged while an action waited to start: nothing was started."""
