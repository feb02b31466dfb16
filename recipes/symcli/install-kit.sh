#!/bin/sh
# install-kit.sh KIT [DEST]: install a Solutions Enabler kit into DEST (default /).
#
# KIT is a tarball (.tar.gz, .tgz, .tar) or a single .rpm. Two layouts are understood:
#   - a top-level root/ folder: a ready file tree, copied into DEST as is;
#   - otherwise every *.rpm in it (at any depth, e.g. Dell's se9200-Linux-x86_64-ni.tar.gz) is
#     unpacked with rpm2cpio | cpio. RPM scriptlets are NOT run (no rpm database on Debian);
#     the few things they would do that matter here are done below.
# The vendor's own se*_install.sh is not used: it needs rpm and a Red Hat-like system.
set -eu

die() { echo "install-kit.sh: error: $*" >&2; exit 1; }

[ $# -ge 1 ] || die "usage: install-kit.sh KIT [DEST]"
kit=$1
dest=${2:-/}
[ -f "$kit" ] || die "kit not found: $kit"
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

case "$kit" in
    *.tar.gz | *.tgz) tar -xzf "$kit" -C "$work" --no-same-owner ;;
    *.tar) tar -xf "$kit" -C "$work" --no-same-owner ;;
    *.rpm) cp "$kit" "$work/" ;;
    *) die "unknown kit format (want .tar.gz, .tgz, .tar or .rpm): $kit" ;;
esac

if [ -d "$work/root" ]; then
    echo "install-kit.sh: copying the root/ tree of $(basename "$kit") into $dest"
    cp -a "$work/root/." "$dest/"
else
    find "$work" -type f -name '*.rpm' | sort > "$work/.rpms"
    [ -s "$work/.rpms" ] || die "$(basename "$kit") has neither a root/ folder nor any .rpm"
    while IFS= read -r rpm; do
        echo "install-kit.sh: unpacking $(basename "$rpm")"
        (cd "$dest" && rpm2cpio "$rpm" | cpio -idmu --quiet --no-absolute-filenames) \
            || die "could not unpack $rpm"
    done < "$work/.rpms"
fi

# Unpacking into a staging folder that is later COPY'd onto the base image: a real folder such
# as staging/lib would replace the image's /lib -> usr/lib symlink (merged /usr) and break it,
# so move such folders to where the image's symlink points.
if [ "$dest" != "/" ]; then
    moved=1
    while [ "$moved" = 1 ]; do
        moved=0
        for d in $(cd "$dest" && find . -mindepth 1 -maxdepth 2 -type d | sed 's|^\./||'); do
            if [ -L "/$d" ] && [ -d "/$d" ] && [ ! -L "$dest/$d" ]; then
                real=$(readlink -f "/$d")
                mkdir -p "$dest$real"
                cp -a "$dest/$d/." "$dest$real/"
                rm -rf "${dest:?}/$d"
                moved=1
                break
            fi
        done
    done
fi

# What the RPM scriptlets would have done: the classic /usr/symcli path and the SYMAPI folders
# (the log folder must be writable by whichever user runs the tools).
se=$dest/opt/emc/SYMCLI
[ -d "$se/bin" ] && [ -n "$(ls -A "$se/bin")" ] \
    || die "no files in /opt/emc/SYMCLI/bin after installing $(basename "$kit"): not a Solutions Enabler kit?"
[ -e "$dest/usr/symcli" ] || { mkdir -p "$dest/usr" && ln -s /opt/emc/SYMCLI "$dest/usr/symcli"; }
mkdir -p "$dest/var/symapi/db" "$dest/var/symapi/config" "$dest/var/symapi/log"
chmod 1777 "$dest/var/symapi/log"
chmod -R a+rX "$se"
echo "install-kit.sh: installed: $(ls "$se/bin" | tr '\n' ' ')"
