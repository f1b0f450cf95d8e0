#!/usr/bin/env bash
# Build the controller image remotetune/controller without a container registry:
# the local Debian base (build-base.sh) plus a wheelhouse of remotetune and its
# dependencies built with this machine's pip, so the image build needs no network.
#
# Environment:
#   REMOTETUNE_BASE_IMAGE        base image   (default remotetune/debian-base:bookworm)
#   REMOTETUNE_CONTROLLER_IMAGE  image to tag (default remotetune/controller:latest)
#   PIP                          pip to build the wheels with (default: python3 -m pip)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
base="${REMOTETUNE_BASE_IMAGE:-remotetune/debian-base:bookworm}"
image="${REMOTETUNE_CONTROLLER_IMAGE:-remotetune/controller:latest}"
wheels="$here/controller/wheels"
read -r -a pip <<<"${PIP:-python3 -m pip}"

log() { printf 'build-controller: %s\n' "$*" >&2; }

if [ "$base" = remotetune/debian-base:bookworm ]; then
    REMOTETUNE_BASE_IMAGE="$base" "$here/build-base.sh"
fi
# The image's Python must be able to use the wheels: same minor version.
want="$(docker run --rm "$base" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
have="$("${pip[@]}" --version | sed -n 's/.*(python \([0-9]*\.[0-9]*\)).*/\1/p')"
if [ "$want" != "$have" ]; then
    log "error: $base has Python $want but ${pip[*]} builds for Python $have;"
    log "       set PIP to a Python $want pip (e.g. PIP=/usr/bin/pip3)"
    exit 1
fi
# Wheels of the dependencies only (remotetune itself is installed from the source), kept
# while pyproject.toml is unchanged.
stamp="wheelhouse-v2 $(sha256sum "$root/pyproject.toml" | cut -c1-64) python$have"
if [ "$(cat "$wheels/.stamp" 2>/dev/null)" != "$stamp" ]; then
    log "building dependency wheels into $wheels"
    rm -rf "$wheels"
    "${pip[@]}" wheel --quiet --wheel-dir "$wheels" "$root"
    rm -f "$wheels"/remotetune-*.whl
    # The build backend too: remotetune is installed from source without build isolation,
    # and Debian's venv setuptools (66) is too old for pyproject.toml's SPDX license.
    mapfile -t build_requires < <(python3 -c 'import sys, tomllib
print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["build-system"]["requires"]))' \
        "$root/pyproject.toml")
    "${pip[@]}" download --quiet --only-binary=:all: --dest "$wheels" "${build_requires[@]}"
    printf '%s\n' "$stamp" >"$wheels/.stamp"
else
    log "dependency wheels in $wheels are up to date"
fi
log "docker build -> $image"
docker build --force-rm -f "$here/controller/Dockerfile" --build-arg "BASE_IMAGE=$base" -t "$image" "$root"
log "built $image"
