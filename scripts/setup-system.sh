#!/usr/bin/env bash
# System set-up for a fresh Debian bookworm machine, run as root. Idempotent: a second run checks and exits fast.
# Installs the Debian packages the platform needs and builds TimescaleDB (Apache edition) for PostgreSQL 15
# from Debian's source package, as docs/architecture.md describes.
set -euo pipefail

PG_MAJOR=15
PACKAGES=(
  postgresql-${PG_MAJOR} postgresql-server-dev-${PG_MAJOR} postgresql-client-${PG_MAJOR}
  build-essential cmake xz-utils
  mosquitto mosquitto-clients
  socat
  chromium
  python3-venv
  libgomp1  # numba's OpenMP threading layer: thread-safe, so a VEE pass validates two partitions at once
)

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Debian's postgresql package starts a system cluster on 5432; the project runs its own cluster and never needs it.

EXT_DIR="$(/usr/lib/postgresql/${PG_MAJOR}/bin/pg_config --sharedir)/extension"
if ls "${EXT_DIR}"/timescaledb--*.sql >/dev/null 2>&1; then
  exit 0
fi

echo "setup: building TimescaleDB (Apache edition) for PostgreSQL ${PG_MAJOR} from Debian's source package"
# A deb-src entry only: mixing another release's binaries into bookworm would break the system.
SRC_LIST=/etc/apt/sources.list.d/amr-timescaledb-src.sources
if [ ! -f "$SRC_LIST" ]; then
  as_root tee "$SRC_LIST" >/dev/null <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi
as_root apt-get update -qq
BUILD_DIR="$(mktemp -d)"
trap 'rm -rf "$BUILD_DIR"' EXIT
cd "$BUILD_DIR"
apt-get source --download-only -qq timescaledb
tar -xf timescaledb_*.orig.tar.*
cd "$(find . -maxdepth 1 -mindepth 1 -type d -name 'timescaledb*' | head -n 1)"
./bootstrap -DAPACHE_ONLY=1 -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF \
  -DPG_CONFIG=/usr/lib/postgresql/${PG_MAJOR}/bin/pg_config >/dev/null
make -C build -j"$(nproc)" install >/dev/null
echo "setup: TimescaleDB installed into ${EXT_DIR}"
