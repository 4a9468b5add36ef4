#!/bin/sh
# Build the codex-daemonkit .deb from a clean copy of this checkout (SPEC §12.3).
#
#   packaging/build-deb.sh [OUTDIR]        default OUTDIR: dist/deb under the checkout
#
# Copies the files git knows about (tracked, plus untracked files that are not
# ignored: the working tree as it is, without .venv, caches or build output) into
# a temporary tree, puts packaging/debian/ at its root, builds with
# `dpkg-buildpackage -us -uc -b` under a clean environment (so no virtualenv or
# pyenv interpreter leaks into the build), then runs lintian on the result.
# Prints the path of the .deb on the last line of stdout.
#
# Needs (Debian bookworm): debhelper dh-python pybuild-plugin-pyproject python3-all
# python3-setuptools lintian; git when the checkout is a git work tree.
# LINTIAN=0 skips lintian. Lintian runs with --pedantic and fails the build on any
# error or warning; initial-upload-closes-no-bugs is expected (there is no ITP bug).
set -eu

repo=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-"$repo/dist/deb"}
version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$repo/daemonkit/__init__.py")
debian_version=$(sed -n '1s/^codex-daemonkit (\([^)]*\)).*/\1/p' "$repo/packaging/debian/changelog")
if [ "${debian_version%-*}" != "$version" ]; then
    echo "build-deb.sh: packaging/debian/changelog has $debian_version," \
        "but daemonkit.__version__ is $version" >&2
    exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/codex-daemonkit-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
src="$work/codex-daemonkit-$version"

"$repo/packaging/copy-tree.sh" "$src"
rm -rf "$src/debian"
cp -r "$src/packaging/debian" "$src/debian"

(
    cd "$src"
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$work" LC_ALL=C.UTF-8 \
        TMPDIR="${TMPDIR:-/tmp}" DEB_BUILD_OPTIONS="${DEB_BUILD_OPTIONS:-}" \
        dpkg-buildpackage -us -uc -b >&2
)

changes=$(ls "$work"/codex-daemonkit_"$debian_version"_*.changes)
deb="$work/codex-daemonkit_${debian_version}_all.deb"

if [ "${LINTIAN:-1}" != 0 ]; then
    # --fail-on error,warning: errors and warnings fail the build; pedantic and info
    # tags are shown for the packager.
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$work" LC_ALL=C.UTF-8 \
        lintian --pedantic --info --display-experimental --fail-on error,warning \
        --suppress-tags initial-upload-closes-no-bugs "$changes" >&2
fi

mkdir -p "$out"
cp "$deb" "$changes" "$work"/codex-daemonkit_"$debian_version"_*.buildinfo "$out/"
echo "$out/$(basename "$deb")"
