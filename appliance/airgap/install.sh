#!/bin/sh
# Tracehold's offline installer. Needs no network, no Python and no pip.
#   ./install.sh [--prefix /opt/tracehold] [--data-dir /var/lib/tracehold]
#                [--runtime native|docker [--docker-host URL]] [--trusted-key ed25519:...]
#                [--no-start]
#   ./install.sh --upgrade      keep data and keys, replace the program
#   ./install.sh --uninstall [--purge]
# Every file's checksum is checked here first (so a damaged installer is not run), then
# again with the manifest's signature by the installer itself, before anything is written.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
if ! sha256sum --quiet --strict -c SHA256SUMS >/tmp/tracehold-sha256.$$ 2>&1; then
  echo "install.sh: the bundle is damaged; nothing was installed:" >&2
  grep -v ': OK$' /tmp/tracehold-sha256.$$ >&2 || true
  rm -f /tmp/tracehold-sha256.$$
  exit 2
fi
rm -f /tmp/tracehold-sha256.$$
exec "$here/appliance/tracehold" bundle install --bundle "$here" "$@"
