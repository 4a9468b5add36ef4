#!/bin/sh
# Smoke-build the codex-daemonkit Arch package from a clean copy of this checkout
# (SPEC §12.3).
#
#   packaging/build-arch.sh [OUTDIR]       default OUTDIR: dist/arch under the checkout
#
# Makes the source tarball (packaging/copy-tree.sh) next to a copy of
# packaging/arch/PKGBUILD in a temporary directory and runs makepkg there.
# Prints the path of the package on the last line of stdout.
#
# makepkg refuses to run as root: as root, the build runs as BUILD_USER (default
# nobody) in a directory it owns. On a host that is not Arch (Debian: makepkg comes
# from the "makepkg" package, with pacman-package-manager, libarchive-tools and
# fakeroot) the pacman
# database knows none of the dependencies, so makepkg runs with --nodeps --nocheck
# (check() needs Arch's python-pytest and friends); the build and package steps
# run in full, with Debian's python3 as `python` and its /usr install layout
# (DEB_PYTHON_INSTALL_LAYOUT=deb_system; Debian's default for prefix installs is
# /usr/local, Arch's is /usr).
set -eu

repo=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-"$repo/dist/arch"}
pkgbuild="$repo/packaging/arch/PKGBUILD"
version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$repo/daemonkit/__init__.py")
pkgver=$(sed -n 's/^pkgver=//p' "$pkgbuild")
if [ "$pkgver" != "$version" ]; then
    echo "build-arch.sh: $pkgbuild has pkgver $pkgver, but daemonkit.__version__ is $version" >&2
    exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/codex-daemonkit-arch.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
mkdir -p "$work/build" "$work/src" "$work/bin" "$work/pkg"
"$repo/packaging/copy-tree.sh" "$work/src/codex-daemonkit-$version"
tar -C "$work/src" --owner=0 --group=0 --sort=name \
    -czf "$work/build/codex-daemonkit-$version.tar.gz" "codex-daemonkit-$version"
rm -rf "$work/src"
cp "$pkgbuild" "$work/build/PKGBUILD"

if ! command -v pacman >/dev/null 2>&1; then
    # makepkg calls pacman for its own checks and dies with an unhelpful signal
    # message without it.
    echo "build-arch.sh: pacman not found; makepkg needs it" \
        "(Debian: apt-get install pacman-package-manager makepkg libarchive-tools fakeroot)" >&2
    exit 1
fi
flags=""
extra_env=""
if ! pacman -Q python >/dev/null 2>&1; then
    echo "build-arch.sh: not an Arch host (pacman does not know python);" \
        "building with --nodeps --nocheck" >&2
    flags="--nodeps --nocheck"
    extra_env="DEB_PYTHON_INSTALL_LAYOUT=deb_system"
fi
path=/usr/sbin:/usr/bin:/sbin:/bin
if ! env PATH="$path" sh -c 'command -v python' >/dev/null 2>&1; then
    # A script, not a symlink: installer writes sys.executable into the commands'
    # shebangs, and through exec that is python3's own path, not this shim's.
    python3=$(env PATH="$path" sh -c 'command -v python3')
    printf '#!/bin/sh\nexec %s "$@"\n' "$python3" >"$work/bin/python"
    chmod 755 "$work/bin/python"
    path="$work/bin:$path"
fi

run_as=""
if [ "$(id -u)" = 0 ]; then
    user=${BUILD_USER:-nobody}
    chown -R "$user" "$work"
    run_as="runuser -u $user --"
fi
# shellcheck disable=SC2086 # $run_as, $flags and $extra_env are word lists
(
    cd "$work/build"
    $run_as env -i PATH="$path" HOME="$work" LC_ALL=C.UTF-8 TMPDIR="$work" \
        PKGDEST="$work/pkg" SRCDEST="$work/build" BUILDDIR="$work/build" $extra_env \
        makepkg --force --noconfirm --noprogressbar $flags >&2
)

package=$(ls "$work"/pkg/codex-daemonkit-"$version"-*-any.pkg.tar.*)
mkdir -p "$out"
cp "$package" "$out/"
echo "$out/$(basename "$package")"
