"""The command line (README "Command line"): every mistake a ``ConfigError`` naming its flag."""

import argparse
import math
import os
import re
import ssl
from urllib.parse import urlsplit

from .problems import ConfigError, log

PROG = "pbs-job-exporter"
PBS_DEFAULT_PORT = 8007
TOKEN_RE = re.compile(r"[^\s@!:]+@[^\s@!:]+![^\s@!:]+:\S+")


def _positive(value):
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not number > 0 or math.isinf(number):
        raise argparse.ArgumentTypeError(f"must be > 0: {value!r}")
    return number


def parse_listen(value):
    match = re.fullmatch(r"\[([0-9A-Fa-f:.%\w]+)\]:(\d+)|([^\[\]:]*):(\d+)",
                         value)
    if not match:
        raise ConfigError(f"--listen {value!r}: expected host:port "
                          "(or [ipv6]:port)")
    host = match.group(1) or match.group(3) or "0.0.0.0"
    port = int(match.group(2) or match.group(4))
    if port > 65535:
        raise ConfigError(f"--listen {value!r}: port out of range")
    return host, port


def parse_pbs_url(value):
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"--pbs-url {value!r}: {exc}") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError(f"--pbs-url {value!r}: expected "
                          "https://host[:port], e.g. https://localhost:8007")
    if parts.query or parts.fragment or parts.username:
        raise ConfigError(f"--pbs-url {value!r}: no query, fragment or "
                          "user part allowed")
    path = parts.path.rstrip("/")
    path = path.removesuffix("/api2/json")
    return parts.scheme, parts.hostname, port or PBS_DEFAULT_PORT, path


def read_token(path):
    try:
        with open(path, encoding="utf-8") as handle:
            token = handle.read().strip()
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise ConfigError(f"--token-file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"--token-file {path}: not text") from None
    if not TOKEN_RE.fullmatch(token):
        # Never echo the file: it holds a secret.
        raise ConfigError(f"--token-file {path}: expected one line "
                          "'user@realm!tokenid:secret'")
    if mode & 0o077:
        log.warning("token file %s is readable by group or others; "
                    "chmod 600 it", path)
    return token


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog=PROG, description="Serve Proxmox Backup Server job results "
        "(per-job attempt/success counters, durations, datastore usage) "
        "as Prometheus metrics.")
    parser.add_argument("--pbs-url", default="https://localhost:8007",
                        help="PBS API base URL (default %(default)s)")
    parser.add_argument("--token-file", default="/etc/pbs-job-exporter/token",
                        help="file holding user@realm!tokenid:secret "
                        "(default %(default)s)")
    parser.add_argument("--listen", required=True,
                        help="address to serve /metrics on, host:port")
    parser.add_argument("--state-file",
                        default="/var/lib/pbs-job-exporter/state.json",
                        help="where counted tasks and counters persist "
                        "(default %(default)s)")
    parser.add_argument("--node", default="localhost",
                        help="PBS node name for the task list "
                        "(default %(default)s)")
    parser.add_argument("--verify-tls", action=argparse.BooleanOptionalAction,
                        default=True, help="verify the PBS TLS certificate "
                        "(default: verify)")
    parser.add_argument("--ca-file", help="PEM file to trust for the PBS "
                        "certificate, e.g. /etc/proxmox-backup/proxy.pem "
                        "(default: the system CAs)")
    parser.add_argument("--interval", type=_positive, default=30.0,
                        help="seconds between polls of PBS (default 30)")
    parser.add_argument("--timeout", type=_positive, default=10.0,
                        help="seconds to wait for one PBS API answer "
                        "(default 10)")
    parser.add_argument("--snapshot-interval", type=_positive, default=300.0,
                        help="seconds between snapshot counts (default 300)")
    parser.add_argument("--overlap", type=_positive, default=3600.0,
                        help="seconds of task history re-read on every poll "
                        "(default 3600)")
    parser.add_argument("--initial-lookback", type=_positive,
                        default=7 * 86400.0,
                        help="with no state file, count tasks of this many "
                        "past seconds (default 604800, 7 days)")
    parser.add_argument("--log-level", default="info",
                        choices=("debug", "info", "warning", "error"))
    args = parser.parse_args(argv)

    args.listen_addr = parse_listen(args.listen)
    args.pbs = parse_pbs_url(args.pbs_url)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.-]*", args.node):
        raise ConfigError(f"--node {args.node!r}: not a node name")
    args.token = read_token(args.token_file)
    state_dir = os.path.dirname(os.path.abspath(args.state_file))
    if os.path.isdir(args.state_file):
        raise ConfigError(f"--state-file {args.state_file}: is a directory")
    if not os.path.isdir(state_dir):
        raise ConfigError(f"--state-file {args.state_file}: directory "
                          f"{state_dir} does not exist")
    if not os.access(state_dir, os.W_OK | os.X_OK):
        raise ConfigError(f"--state-file {args.state_file}: directory "
                          f"{state_dir} is not writable")
    if args.ca_file and not args.verify_tls:
        raise ConfigError("--ca-file makes no sense with --no-verify-tls")
    args.ssl_context = make_ssl_context(args.verify_tls, args.ca_file)
    return args


def make_ssl_context(verify, ca_file):
    if not verify:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"--ca-file {ca_file}: cannot load: "
                          f"{getattr(exc, 'strerror', None) or exc}") from None
    if ca_file:
        # Lets the file be the PBS certificate itself, even one that is not
        # self-signed (an ACME certificate): trust it without its chain.
        context.verify_flags |= getattr(ssl, "VERIFY_X509_PARTIAL_CHAIN", 0)
    return context

