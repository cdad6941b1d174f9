#!/usr/bin/env bash
# A local base image for machines that reach Debian's archive and PyPI but no container
# registry: Debian bookworm (debootstrap, minbase) with Python 3.11 and venv, trusting the
# machine's own CA certificates (for a TLS-intercepting proxy to PyPI).
#
#   images/base.sh [NAME]        default NAME finetune-operator/base:bookworm
#
# Then build with `make images BASE_IMAGE=NAME`. The rootfs is cached beside the image name in
# $FT_CACHE (default ~/.cache/finetune-operator): a second call with the image present is a no-op.
set -euo pipefail
name=${1:-finetune-operator/base:bookworm}
docker=${DOCKER:-docker}
if $docker image inspect "$name" >/dev/null 2>&1; then
  echo "$name present"; exit 0
fi
cache=${FT_CACHE:-$HOME/.cache/finetune-operator}
rootfs=$(mktemp -d "$cache/rootfs.XXXXXX" 2>/dev/null || { mkdir -p "$cache"; mktemp -d "$cache/rootfs.XXXXXX"; })
trap 'rm -rf "$rootfs"' EXIT
# The machine's own Debian mirror, as apt is set up here (or DEBIAN_MIRROR).
mirror=${DEBIAN_MIRROR:-$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)}
mirror=${mirror:-$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)}
[ -n "$mirror" ] || { echo "base.sh: no Debian mirror found in apt's sources; set DEBIAN_MIRROR" >&2; exit 2; }
debootstrap --variant=minbase --include=python3.11,python3.11-venv,python3-pip,ca-certificates \
  bookworm "$rootfs" "$mirror" >/dev/null
# The machine's extra certificates, so pip inside a build reaches PyPI through its proxy.
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
  chroot "$rootfs" update-ca-certificates >/dev/null
fi
ln -sf python3.11 "$rootfs/usr/bin/python"
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" -c . | $docker import \
  --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
  --change 'ENV LANG=C.UTF-8' - "$name" >/dev/null
echo "$name built"
