#!/bin/sh
# Copy the checkout's source files into DEST (created if missing): the files git
# knows about (tracked, plus untracked files that are not ignored), so the copy is
# the working tree as it is, without .venv, caches or build output. Outside a git
# work tree, everything but those is copied.
#
#   packaging/copy-tree.sh DEST
set -eu

repo=$(cd "$(dirname "$0")/.." && pwd)
dest=$1
mkdir -p "$dest"
if git -C "$repo" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    # Files deleted from the work tree but still in the index are skipped.
    # shellcheck disable=SC2016 # $f is expanded by the inner sh
    git -C "$repo" ls-files -z --cached --others --exclude-standard |
        (cd "$repo" && xargs -0 sh -c 'for f; do [ -f "$f" ] || [ -L "$f" ] && printf "%s\0" "$f"; done' sh) |
        (cd "$repo" && xargs -0 --no-run-if-empty cp --parents --no-dereference -t "$dest")
else
    tar -C "$repo" -cf - \
        --exclude=./.git --exclude=./.venv --exclude=__pycache__ --exclude='*.egg-info' \
        --exclude=./build --exclude=./dist --exclude='./.*_cache' --exclude=./.ci-cache . |
        tar -C "$dest" -xf -
fi
