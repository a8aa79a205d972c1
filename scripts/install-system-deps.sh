#!/usr/bin/env bash
# Install the Debian/Ubuntu packages cbm-airflow needs, only those that are missing:
# PostgreSQL server + the matching PostGIS package (for the throwaway test/demo cluster),
# GDAL (ogr2ogr, headers for the Python bindings), a Python toolchain, and redis-server
# (the Celery broker of `make stack` / `make test-stack`), and Node.js with npm for the parcel
# viewer's page (web/viewer; kept when node/npm are already on the PATH, e.g. from NodeSource).
#   --chromium   also the Debian chromium package (the page tests of `make test` and
#                `make test-stack`, `make screenshots`)
#   --hosts      also iproute2 and util-linux (`ip`, `unshare`, `nsenter`: the namespaces of
#                `make stack HOSTS=3` / `make test-hosts`)
set -euo pipefail

with_chromium=0
with_hosts=0
for arg in "$@"; do
  case "$arg" in
    --chromium) with_chromium=1 ;;
    --hosts) with_hosts=1 ;;
    *) echo "install-system-deps: unknown option $arg" >&2; exit 2 ;;
  esac
done

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "install-system-deps: not root and no sudo; install the packages listed below yourself" >&2
  fi
fi

missing() {  # print the packages of "$@" that dpkg does not know as installed
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
  done
}

want=(postgresql postgresql-contrib gdal-bin libgdal-dev python3-dev python3-venv g++ make redis-server)
command -v node >/dev/null 2>&1 || want+=(nodejs)
command -v npm >/dev/null 2>&1 || want+=(npm)
[ "$with_chromium" = 1 ] && want+=(chromium)
[ "$with_hosts" = 1 ] && want+=(iproute2 util-linux)
need=$(missing "${want[@]}")
updated=0
if [ -n "$need" ]; then
  echo "install-system-deps: installing $need"
  $SUDO apt-get update -qq && updated=1
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $need
fi

# PostGIS must match the server's major version (postgresql-15-postgis-3 on Debian 12).
major=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
postgis="postgresql-${major}-postgis-3"
if [ -n "$(missing "$postgis")" ]; then
  echo "install-system-deps: installing $postgis"
  [ "$updated" = 1 ] || $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$postgis"
fi
echo "install-system-deps: ok (PostgreSQL $major, GDAL $(gdal-config --version))"
