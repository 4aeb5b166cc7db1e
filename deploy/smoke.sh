#!/usr/bin/env bash
# Container smoke test: build deploy/Dockerfile and run the image against the emulated G4F (and
# Telegram) servers on this host: `check` passes, /healthz and /readyz answer, `ask` streams,
# SIGTERM exits 0 (tests/test_container.py does the checks).
#
# On machines without a Docker engine or image registry (see README, "Container"): installs
# podman, runc and debootstrap from Debian if missing, makes a local Debian 12 base image once
# (kept between runs) and builds on it. When the container runtime cannot start even a trivial
# container here, it says so loudly and exits 0 (skipped); any later failure is a real one.
#
# Usage: deploy/smoke.sh            (from anywhere; uses the repo's .venv, `make setup` first)
set -euo pipefail
cd "$(dirname "$0")/.."

BASE=localhost/g4f-bridge-base:bookworm
IMAGE=localhost/g4f-bridge:smoke
started=$(date +%s)

skip() {
  printf '\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n' >&2
  printf '!!! CONTAINER SMOKE TEST SKIPPED: %s\n' "$1" >&2
  printf '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\n' >&2
  exit 0
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# crun and the default ulimits fail on these machines (setrlimit RLIMIT_NOFILE): runc, none.
printf '[containers]\ndefault_ulimits = []\n' > "$work/containers.conf"
export CONTAINERS_CONF="$work/containers.conf"

if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v debootstrap >/dev/null; then
  echo "smoke: installing podman, runc, debootstrap" >&2
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    skip "podman/runc/debootstrap are missing and cannot be installed here (needs root and apt)"
  fi
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc debootstrap) \
    > "$work/apt.log" 2>&1 || { tail -5 "$work/apt.log" >&2; skip "installing podman failed"; }
fi

if [ -n "${SMOKE_BASE_IMAGE:-}" ]; then
  BASE=$SMOKE_BASE_IMAGE                      # an image already at hand, e.g. python:3.11-slim
elif ! podman image exists "$BASE"; then
  mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  echo "smoke: making the base image $BASE from $mirror (once; about a minute)" >&2
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$work/rootfs" "$mirror" > "$work/debootstrap.log" 2>&1 \
    || { tail -5 "$work/debootstrap.log" >&2; skip "debootstrap of the base image failed"; }
  tar -C "$work/rootfs" -c . | podman import -q - "$BASE" >/dev/null
  rm -rf "$work/rootfs"
fi

if ! podman run --rm --runtime runc --network host "$BASE" true > "$work/trivial.log" 2>&1; then
  cat "$work/trivial.log" >&2
  skip "the container runtime cannot start a trivial container on this machine"
fi

# The proxy's certificate authority and pip's settings come from the host, read-only, at build
# time only: nothing of them ends up in the image.
mounts=()
for file in /etc/ssl/certs/ca-certificates.crt /etc/pip.conf; do
  [ -f "$file" ] && mounts+=(-v "$file:$file:ro")
done
build_started=$(date +%s)
previous=$(podman image inspect "$IMAGE" --format '{{.Id}}' 2>/dev/null || true)
podman build -q --format docker --network host --runtime runc "${mounts[@]}" \
  --build-arg "BASE_IMAGE=$BASE" -f deploy/Dockerfile -t "$IMAGE" . >/dev/null
echo "smoke: image built in $(( $(date +%s) - build_started )) s, $(podman image inspect "$IMAGE" --format '{{.Size}}' | awk '{printf "%d MB", $1/1e6}')" >&2

current=$(podman image inspect "$IMAGE" --format '{{.Id}}')
if [ -n "$previous" ] && [ "$previous" != "$current" ]; then
  podman rmi "$previous" >/dev/null 2>&1 || true   # our own last build, now untagged
fi

SMOKE_IMAGE=$IMAGE .venv/bin/python -m pytest -q -p no:cacheprovider -m container tests/test_container.py
echo "smoke: passed in $(( $(date +%s) - started )) s" >&2
