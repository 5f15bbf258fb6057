"""A real Subsonic server for the tests and the bench: supysonic (API 1.12.0: no token
authentication, no getSimilarSongs, no OpenSubsonic) over a folder of music, on a free
loopback port, in a process of its own.

Run as a script: ``subsonic_server.py serve CONFIG MUSIC USER PASSWORD PORT`` (adds the
user and folder, scans, serves) or ``subsonic_server.py scan CONFIG`` (scans again).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2

USER, PASSWORD = "alice", "wonder land"
START_TIMEOUT = 60.0  # seconds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Supysonic:
    """``with Supysonic(music, home) as server:`` serves ``music`` at ``server.url``."""

    def __init__(self, music: Path, home: Path):
        self.music, self.home = Path(music), Path(home)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = self.home / "supysonic.conf"
        self.config.write_text(
            f"[base]\ndatabase_uri = sqlite:///{self.home / 'supysonic.db'}\n"
            f"[webapp]\ncache_dir = {self.home / 'cache'}\nlog_level = ERROR\nmount_webui = no\n"
            f"[daemon]\nsocket = {self.home / 'daemon.sock'}\nrun_watcher = no\n")
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "Supysonic":
        self.process = subprocess.Popen(
            [sys.executable, __file__, "serve", str(self.config), str(self.music), USER, PASSWORD, str(self.port)],
            stdout=subprocess.DEVNULL, stderr=open(self.home / "server.log", "wb"))
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"supysonic exited: {(self.home / 'server.log').read_text()[-2000:]}")
            try:
                httpx2.get(f"{self.url}/rest/ping", params={"u": USER, "p": PASSWORD, "c": "t", "v": "1.12.0"},
                           timeout=2)
                return self
            except httpx2.HTTPError:
                time.sleep(0.1)
        self.__exit__()
        raise RuntimeError(f"supysonic did not start within {START_TIMEOUT} s")

    def rescan(self) -> None:
        """Scan the music folder again (songs added and removed since)."""
        subprocess.run([sys.executable, __file__, "scan", str(self.config)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def __exit__(self, *exc) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None


def _scan() -> None:
    from supysonic.db import Folder
    from supysonic.scanner import Scanner

    scanner = Scanner(force=False)
    for (name,) in Folder.select(Folder.name).where(Folder.root).tuples():
        scanner.queue_folder(name)
    scanner.run()


def main(argv: list[str]) -> None:
    from supysonic.config import IniConfig
    from supysonic.db import open_connection
    from supysonic.web import create_application

    command, config = argv[0], IniConfig([argv[1]])
    app = create_application(config)
    open_connection()
    if command == "scan":
        _scan()
        return
    from supysonic.managers.folder import FolderManager
    from supysonic.managers.user import UserManager
    from werkzeug.serving import make_server

    music, user, password, port = argv[2:]
    UserManager.add(user, password)
    FolderManager.add("music", music)
    _scan()
    make_server("127.0.0.1", int(port), app, threaded=True).serve_forever()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main(sys.argv[1:])
