"""Fake installers: a loopback install-script server, fake releases and a fake npm.

The standalone channel (SPEC §7.6) fetches a shell script over HTTP and runs it with
/bin/sh; these tests serve one from 127.0.0.1 that installs a fake codex release and
flips ``current``, as the real installer does, and can cut its answer short on request.
The npm channel (SPEC §7.7) runs ``npm install``; a fake ``npm`` first on PATH lays the
fake codex out in 0.169.0's package layout, offline.
"""

from __future__ import annotations

import http.server
import json
import os
import sys
import textwrap
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from daemonkit.install import host_targets
from tests.harness import FAKE_SOURCE, TARGET

if TYPE_CHECKING:
    from tests.harness import Home

__all__ = [
    "ScriptServer",
    "install_script",
    "put_fake_npm_on_path",
    "release_dir",
    "stage_payload",
]


class ScriptServer:
    """Serves ``/install.sh``: whole, or cut as ``cut`` says at the time of the GET."""

    def __init__(self) -> None:
        self.script = "exit 0\n"
        self.cut: str | None = None  # None, "short-body" or "chunked-cut"
        self.fetches = 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                server.fetches += 1
                body = server.script.encode()
                if server.cut == "short-body":
                    # Promises more than it sends, then closes: a dropped connection.
                    head = (
                        "HTTP/1.1 200 OK\r\nContent-Type: text/x-sh\r\n"
                        f"Content-Length: {len(body) + 4096}\r\nConnection: close\r\n\r\n"
                    )
                    self.wfile.write(head.encode() + body)
                elif server.cut == "chunked-cut":
                    head = (
                        "HTTP/1.1 200 OK\r\nContent-Type: text/x-sh\r\n"
                        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                    )
                    self.wfile.write(head.encode() + f"{len(body) + 4096:x}\r\n".encode() + body)
                else:
                    self.send_response(200)
                    self.send_header("Content-Type", "text/x-sh")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                self.wfile.flush()
                self.close_connection = True

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/install.sh"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def release_dir(home: Home, version: str) -> Path:
    return Path(home.paths.releases) / f"{version}-{TARGET}"


def stage_payload(home: Home, version: str, binary: str = "fake", **config: object) -> Path:
    """A build for the install script to copy: the fake codex, or a broken ``codex``.

    ``binary``: ``fake`` (the fake, configured by ``config``), ``not-executable`` (the
    fake, mode 0644) or ``zero-bytes`` (an empty file, mode 0755).
    """
    payload = home.root / "dist" / f"{version}-{binary}"
    payload.mkdir(parents=True, exist_ok=True)
    codex = payload / "codex"
    if binary == "zero-bytes":
        codex.write_bytes(b"")
    else:
        source = FAKE_SOURCE.read_text().splitlines(keepends=True)
        codex.write_text(f"#!{sys.executable}\n" + "".join(source[1:]))
    codex.chmod(0o644 if binary == "not-executable" else 0o755)
    (payload / "fake-codex.json").write_text(json.dumps({"version": version, **config}))
    return payload


def install_script(payload: Path, version: str, *, before: str = "", after: str = "") -> str:
    """The standalone installer in miniature: copy a release (mode kept), flip ``current``."""
    release = f'"$P/releases/{version}-{TARGET}"'
    return textwrap.dedent(
        f"""\
        set -eu
        {before}
        P="$CODEX_HOME/packages/standalone"
        mkdir -p {release}
        cp -p "{payload}/codex" {release}/codex.new
        mv -f {release}/codex.new {release}/codex
        cp "{payload}/fake-codex.json" {release}/fake-codex.json
        ln -sfn {release} "$P/current.new"
        mv -Tf "$P/current.new" "$P/current"
        echo "installed {version}"
        {after}
        """
    )


FAKE_NPM = """\
#!{python}
# A fake npm: `npm install --prefix DIR ... @openai/codex@V` lays out 0.169.0's packages.
import json, os, sys
args = sys.argv[1:]
assert args[0] == "install", args
prefix = args[args.index("--prefix") + 1]
version = args[-1].rpartition("@")[2]
if version == "latest":
    version = {new!r}
scope = os.path.join(prefix, "node_modules", "@openai")
os.makedirs(os.path.join(scope, "codex"))
with open(os.path.join(scope, "codex", "package.json"), "w") as f:
    json.dump({{"name": "@openai/codex", "version": version}}, f)
bin_dir = os.path.join(scope, "codex-linux-x64", "vendor", {target!r}, "bin")
os.makedirs(bin_dir)
with open({fake!r}) as f:
    source = f.read().split("\\n", 1)[1]
with open(os.path.join(bin_dir, "codex"), "w") as f:
    f.write("#!" + {python!r} + "\\n" + source)
os.chmod(os.path.join(bin_dir, "codex"), 0o755)
with open(os.path.join(bin_dir, "fake-codex.json"), "w") as f:
    json.dump({{"version": version}}, f)
sys.stdout.write("added 2 packages in 0.1s\\n")
"""


def put_fake_npm_on_path(home: Home, *, latest: str) -> None:
    """Put a fake ``npm`` first on the PATH of ``home``'s commands; it installs the fake
    codex at the requested version, or ``latest`` for ``@latest``."""
    bin_dir = home.root / "npm-bin"
    bin_dir.mkdir()
    npm = bin_dir / "npm"
    npm.write_text(
        FAKE_NPM.format(
            python=sys.executable, new=latest, target=host_targets()[0], fake=str(FAKE_SOURCE)
        )
    )
    npm.chmod(0o755)
    home.extra_env["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}"
