#!/usr/bin/env bash
# Podman as the engine (docs/environments.md): Debian's `podman`, rootful,
# serving Docker's API with `podman system service` on a socket and storage
# of its own; the example suites and the room tests pass on it and leave
# nothing labelled cleanroom.managed=true in it (tests/podman.rs does all of
# that, and stops its service). Takes about a minute.
set -euo pipefail
cd "$(dirname "$0")/.."

skip() {
  echo "!!! SKIPPED: the Podman proof (.ci/podman.sh): $1 !!!" >&2
  exit 0
}
if ! command -v podman >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman >/dev/null ||
    skip "Debian's podman package cannot be installed on this machine"
fi
# The machine cannot run Podman at all (no user namespaces, no storage
# driver, …): say so with Podman's own words. Anything after this that
# fails is a failure.
probe=$(mktemp -d)
info=$(podman --root "$probe/root" --runroot "$probe/runroot" --tmpdir "$probe/tmp" \
  --cgroup-manager=cgroupfs --events-backend=file info 2>&1) || {
  rm -rf "$probe"
  skip "podman info fails here: $info"
}
rm -rf "$probe"

TEST_PODMAN=1 cargo nextest run -p cleanroom-tests --test podman --no-capture
