#!/usr/bin/env bash
# Build the local base image remotetune/debian-base:bookworm without a container registry.
#
# debootstrap (minbase variant) fetches Debian bookworm from the same Debian mirror this
# machine's apt already uses, the root filesystem is packed into a tarball cached under
# ${XDG_CACHE_HOME:-~/.cache}/remotetune/, and `docker import` turns it into an image.
#
# Idempotent: does nothing when the image exists; reuses the cached tarball when only the
# image is missing (e.g. after `docker system prune`).  Needs root (debootstrap chroots).
#
# Environment:
#   REMOTETUNE_BASE_IMAGE     image to create   (default remotetune/debian-base:bookworm)
#   REMOTETUNE_DEBIAN_MIRROR  Debian mirror URL (default: detected from /etc/apt/sources.list*)
#   REMOTETUNE_CACHE_DIR      tarball cache     (default ${XDG_CACHE_HOME:-~/.cache}/remotetune)
#   REMOTETUNE_REBUILD=1      rebuild even if the image and the tarball exist
set -euo pipefail

IMAGE="${REMOTETUNE_BASE_IMAGE:-remotetune/debian-base:bookworm}"
SUITE=bookworm
PACKAGES="python3,openssh-server,procps,iproute2,ca-certificates"
CACHE_DIR="${REMOTETUNE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/remotetune}"
# The package list is part of the name: changing it invalidates the cache.
PKG_TAG="$(printf '%s' "$PACKAGES" | sha256sum | cut -c1-12)"
TARBALL="$CACHE_DIR/debian-$SUITE-minbase-$PKG_TAG.tar"

log() { printf 'build-base: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Print the first Debian mirror URI that apt on this machine uses for the main archive
# (one-line "deb URL SUITE ..." lists and deb822 ".sources" files both understood).
detect_mirror() {
    local etc="${APT_ETC:-/etc/apt}" files=() f
    [ -f "$etc/sources.list" ] && files+=("$etc/sources.list")
    for f in "$etc"/sources.list.d/*.list "$etc"/sources.list.d/*.sources; do
        [ -f "$f" ] && files+=("$f")
    done
    [ "${#files[@]}" -gt 0 ] || return 1
    awk '
        function want(uri, suites) {
            return uri !~ /security/ && suites ~ /(^|[ \t])(bookworm|stable)([ \t]|$)/ \
                && uri ~ /debian\/?$/
        }
        FNR == 1 { if (uris != "" && want(uris, suites)) { print uris; done = 1; exit } uris = ""; suites = "" }
        /^[ \t]*deb[ \t]/ {
            i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
            if (want($i, $(i + 1))) { print $i; done = 1; exit }
        }
        /^URIs:/ { uris = $2 }
        /^Suites:/ { suites = $0; sub(/^Suites:/, "", suites) }
        /^[ \t]*$/ { if (uris != "" && want(uris, suites)) { print uris; done = 1; exit } uris = ""; suites = "" }
        END { if (!done && uris != "" && want(uris, suites)) print uris }
    ' "${files[@]}"
}

if [ "${REMOTETUNE_REBUILD:-0}" != 1 ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    log "$IMAGE already exists; nothing to do (REMOTETUNE_REBUILD=1 forces a rebuild)"
    exit 0
fi

command -v docker >/dev/null || die "docker is not installed"
mkdir -p "$CACHE_DIR"

if [ "${REMOTETUNE_REBUILD:-0}" = 1 ] || [ ! -s "$TARBALL" ]; then
    [ "$(id -u)" = 0 ] || die "debootstrap needs root; run as root or with sudo"
    command -v debootstrap >/dev/null || die "debootstrap is missing: apt-get install debootstrap"
    MIRROR="${REMOTETUNE_DEBIAN_MIRROR:-$(detect_mirror || true)}"
    [ -n "$MIRROR" ] || die "no Debian mirror found in /etc/apt/sources.list*; set REMOTETUNE_DEBIAN_MIRROR"
    ROOTFS="$(mktemp -d "$CACHE_DIR/rootfs.XXXXXX")"
    trap 'rm -rf "$ROOTFS" "$TARBALL.part"' EXIT
    log "debootstrap $SUITE from $MIRROR (packages: $PACKAGES)"
    debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOTFS" "$MIRROR" >&2
    # Slim the image down and make apt inside it use the same mirror.
    rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* \
        "$ROOTFS"/etc/ssh/ssh_host_* "$ROOTFS"/tmp/* "$ROOTFS"/var/log/*.log
    printf 'deb %s %s main\n' "$MIRROR" "$SUITE" >"$ROOTFS/etc/apt/sources.list"
    : >"$ROOTFS/etc/machine-id"
    log "packing root filesystem into $TARBALL"
    tar --numeric-owner --xattrs -C "$ROOTFS" -cf "$TARBALL.part" .
    mv "$TARBALL.part" "$TARBALL"
    rm -rf "$ROOTFS"
    trap - EXIT
else
    log "reusing cached root filesystem $TARBALL"
fi

log "docker import -> $IMAGE"
docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    "$TARBALL" "$IMAGE" >/dev/null
log "built $IMAGE"
