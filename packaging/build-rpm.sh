#!/bin/sh
# Smoke-build the codex-daemonkit rpm from a clean copy of this checkout (SPEC §12.3).
#
#   packaging/build-rpm.sh [OUTDIR]        default OUTDIR: dist/rpm under the checkout
#
# Makes Source0 (codex-daemonkit-VERSION.tar.gz) from the files git knows about
# (packaging/copy-tree.sh), runs `rpmbuild -bb` with packaging/rpm/codex-daemonkit.spec
# in a private _topdir under a clean environment, then rpmlint when it is installed
# (settings that filter configuration noise: packaging/rpm/rpmlint.toml; an
# rpmlint error fails the build, RPMLINT=0 skips it).
# Prints the path of the .rpm on the last line of stdout.
#
# On a host whose rpm database does not know python3-devel (Debian: the "rpm"
# package provides rpmbuild, but the build requirements are Debian packages) the
# build runs with --nodeps, and the spec's fallback path (python3 -m build, then
# the installer module) is used because the Fedora pyproject macros are absent.
# Needs there: rpm python3-build python3-installer python3-setuptools.
set -eu

repo=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-"$repo/dist/rpm"}
spec="$repo/packaging/rpm/codex-daemonkit.spec"
version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$repo/daemonkit/__init__.py")
spec_version=$(sed -n 's/^Version: *//p' "$spec")
if [ "$spec_version" != "$version" ]; then
    echo "build-rpm.sh: $spec has Version $spec_version, but daemonkit.__version__ is $version" >&2
    exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/codex-daemonkit-rpm.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
mkdir -p "$work/rpmbuild/SOURCES" "$work/src"
"$repo/packaging/copy-tree.sh" "$work/src/codex-daemonkit-$version"
tar -C "$work/src" --owner=0 --group=0 --sort=name \
    -czf "$work/rpmbuild/SOURCES/codex-daemonkit-$version.tar.gz" "codex-daemonkit-$version"

nodeps=""
if ! rpm -q --quiet python3-devel 2>/dev/null; then
    echo "build-rpm.sh: python3-devel is not in the rpm database; building with --nodeps" >&2
    nodeps=--nodeps
fi
# __brp_compress: Debian's brp-compress is a #!/bin/sh script that uses bash's
# `read -d`; under dash it fails and leaves the man pages uncompressed.
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$work" LC_ALL=C.UTF-8 TMPDIR="${TMPDIR:-/tmp}" \
    rpmbuild -bb $nodeps --define "_topdir $work/rpmbuild" \
    --define "__brp_compress /bin/bash /usr/lib/rpm/brp-compress %{_prefix}" "$spec" >&2

rpm_file=$(ls "$work"/rpmbuild/RPMS/noarch/codex-daemonkit-"$version"-*.noarch.rpm)
if command -v rpmlint >/dev/null 2>&1 && [ "${RPMLINT:-1}" != 0 ]; then
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$work" LC_ALL=C.UTF-8 \
        rpmlint -c "$repo/packaging/rpm/rpmlint.toml" "$spec" "$rpm_file" >&2
fi
mkdir -p "$out"
cp "$rpm_file" "$out/"
echo "$out/$(basename "$rpm_file")"
