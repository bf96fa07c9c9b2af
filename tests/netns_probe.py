"""Run inside a private network namespace (tests/services/test_pve.py): listens on two ports on every address,
then connects to each from each source address given; prints JSON {"<source>-><port>": open|dropped|error}."""
import json
import socket
import sys

port, other, dest4, dest6 = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
listeners = []
for family, host in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
    for p in (port, other):
        s = socket.socket(family, socket.SOCK_STREAM)
        if family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, p))
        s.listen(8)
        listeners.append(s)
out = {}
for source in sys.argv[5:]:
    family, dest = (socket.AF_INET6, dest6) if ":" in source else (socket.AF_INET, dest4)
    if source in ("127.0.0.1", "::1"):
        dest = source
    for p in (port, other):
        c = socket.socket(family, socket.SOCK_STREAM)
        c.settimeout(1)
        c.bind((source, 0))
        try:
            c.connect((dest, p))
            out[f"{source}->{p}"] = "open"
        except socket.timeout:
            out[f"{source}->{p}"] = "dropped"
        except OSError as err:
            out[f"{source}->{p}"] = f"error {err}"
        finally:
            c.close()
print(json.dumps(out))
