#!/usr/bin/env bash
# The two base images docker-compose.yml and the Dockerfile name (python:3.11-slim, redis:7): used as they are
# when present, pulled when a registry answers, and otherwise built here from Debian's packages: debootstrap a
# minimal Debian (the suite and mirror apt uses on this host) with python3, python3-venv, redis-server and
# ca-certificates, then `docker import` it under both tags (labelled executor.base=debootstrap).
# Usage: scripts/compose-base-images.sh   (needs a running Docker engine; as root for debootstrap)
set -euo pipefail

PY_TAG="${EXEC_PYTHON_IMAGE:-python:3.11-slim}"
REDIS_TAG="${EXEC_REDIS_IMAGE:-redis:7}"
PACKAGES="python3,python3-venv,python-is-python3,redis-server,redis-tools,ca-certificates"
DEBOOTSTRAP_DEADLINE="${DEBOOTSTRAP_DEADLINE:-900}"   # seconds; a cold debootstrap takes a few minutes here

say() { echo "compose-base-images: $*" >&2; }

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

try_pull() {
  # A registry that cannot be reached fails in about a second here; one that hangs is cut at 120 s.
  timeout 120 docker pull -q "$1" >/dev/null 2>&1
}

# The suite and mirror of the first Debian source apt uses (deb822 .sources first, then sources.list).
apt_mirror() {
  local f uri
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    uri=$(awk '/^URIs:/ {print $2; exit}' "$f")
    case "$uri" in *debian-security*|"") ;; *) echo "$uri"; return 0 ;; esac
  done
  if [ -f /etc/apt/sources.list ]; then
    uri=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' \
      /etc/apt/sources.list)
    [ -n "$uri" ] && { echo "$uri"; return 0; }
  fi
  echo "http://deb.debian.org/debian"
}

apt_suite() {
  local codename
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  echo "${codename:-bookworm}"
}

ensure_debootstrap() {
  command -v debootstrap >/dev/null 2>&1 && return 0
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 || {
    say "debootstrap is missing and cannot be installed here (needs root and apt-get)"; return 1; }
  say "installing Debian's debootstrap"
  { timeout 300 apt-get update -qq && DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq debootstrap; } >"$WORK/apt.log" 2>&1 \
    || { tail -n 20 "$WORK/apt.log" >&2; say "could not install debootstrap"; return 1; }
}

build_rootfs() {
  local root="$1" mirror suite
  mirror=$(apt_mirror); suite=$(apt_suite)
  say "debootstrap $suite from $mirror (minbase + $PACKAGES); deadline ${DEBOOTSTRAP_DEADLINE}s"
  if ! timeout "$DEBOOTSTRAP_DEADLINE" debootstrap --variant=minbase --include="$PACKAGES" "$suite" "$root" \
      "$mirror" >"$root.log" 2>&1; then
    say "debootstrap failed or passed its deadline; last lines of $root.log:"
    tail -n 30 "$root.log" >&2
    return 1
  fi
  # The host's CA bundle, so that the image trusts what the host trusts (an intercepting proxy's CA included).
  if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  fi
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/tmp/* "$root"/debootstrap
  mkdir -p "$root/data"
  chroot "$root" chown redis:redis /data
}

import_as() {
  local root="$1" tag="$2"; shift 2
  say "docker import -> $tag"
  tar -C "$root" --numeric-owner -c . | docker import --change 'LABEL executor.base=debootstrap' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' "$@" - "$tag" >/dev/null
}

main() {
  local missing=() tag
  for tag in "$PY_TAG" "$REDIS_TAG"; do
    if have_image "$tag"; then say "$tag: present"; continue; fi
    if try_pull "$tag"; then say "$tag: pulled"; continue; fi
    say "$tag: not present and cannot be pulled; building it from Debian's packages"
    missing+=("$tag")
  done
  [ "${#missing[@]}" = 0 ] && return 0
  WORK=$(mktemp -d /var/tmp/executor-base.XXXXXX)
  trap 'rm -rf "$WORK"' EXIT
  ensure_debootstrap
  build_rootfs "$WORK/rootfs"
  for tag in "${missing[@]}"; do
    if [ "$tag" = "$REDIS_TAG" ]; then
      import_as "$WORK/rootfs" "$tag" --change 'WORKDIR /data' --change 'USER redis' --change 'CMD ["redis-server"]'
    else
      import_as "$WORK/rootfs" "$tag" --change 'CMD ["python3"]'
    fi
  done
}

main "$@"
