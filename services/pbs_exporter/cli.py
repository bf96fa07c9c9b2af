"""The entry point: read the command line, start the server, poll until a signal says stop."""

import logging
import signal
import sys
import threading

from .config import PROG, parse_args
from .exporter import Exporter
from .problems import ConfigError, log
from .server import Exposition, start_server


def main(argv=None):
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(levelname)s %(message)s")
    try:
        args = parse_args(argv)
        logging.getLogger().setLevel(args.log_level.upper())
        stop = threading.Event()
        exporter = Exporter(args, stop)
        server = start_server(args.listen_addr, Exposition(exporter))
    except ConfigError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    host, port = server.server_address[:2]
    log.info("listening on %s:%d, polling %s every %gs", host, port,
             args.pbs_url, args.interval)

    def on_signal(signum, _frame):
        log.info("got %s, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not stop.is_set():
        exporter.poll()
        stop.wait(args.interval)
    server.shutdown()
    return 0
