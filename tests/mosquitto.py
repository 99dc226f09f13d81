"""A real mosquitto broker for the Sparkplug tests: a free loopback port, a generated config
with a password file (no anonymous clients), nothing read from or written to /etc or /var."""

from __future__ import annotations

import getpass
import os
import secrets
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TypedDict

import pytest

from tests.conftest import eventually, free_port


def _binary(name: str) -> str:
    found = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.access(p, os.X_OK)), None
    )
    if found is None:
        if os.environ.get("SCADA_REQUIRE_SYSTEM_TOOLS"):
            pytest.fail(f"{name} is required (apt-get install mosquitto)")
        pytest.skip(
            f"{name} not installed (apt-get install mosquitto); set SCADA_REQUIRE_SYSTEM_TOOLS to fail"
        )
    return found


class Credentials(TypedDict):
    username: str
    password: str


class Mosquitto:
    """One broker process. `users` maps user names to passwords (all get random ones)."""

    def __init__(self, directory: Path, users: tuple[str, ...] = ("scada", "edge", "probe")):
        self.binary = _binary("mosquitto")
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.users = {name: secrets.token_urlsafe(12) for name in users}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = directory / "mosquitto.log"

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def credentials(self, user: str) -> Credentials:
        """`username`/`password` settings for a client of this broker."""
        return {"username": user, "password": self.users[user]}

    def _write_config(self) -> Path:
        passwd = self.directory / "passwd"
        passwd.write_text("")
        tool = _binary("mosquitto_passwd")
        for user, password in self.users.items():
            subprocess.run([tool, "-b", str(passwd), user, password], check=True, timeout=30)
        conf = self.directory / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous false\n"
            f"password_file {passwd}\n"
            # Started as root, mosquitto would switch to the `mosquitto` user, who cannot read
            # the test's private tmp dir: stay who we are.
            f"user {getpass.getuser()}\n"
            "persistence false\n"
            f"log_dest file {self.log_path}\n"
            "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
            "connection_messages true\n"
        )
        return conf

    def start(self) -> Mosquitto:
        conf = self._write_config()
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(conf)], stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        eventually(self._listening, timeout=10)
        return self

    def _listening(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"mosquitto exited {self.proc.returncode}: {self.log()}")
        with socket.create_connection(("127.0.0.1", self.port), timeout=1):
            return True

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path / "mosquitto").start()
    yield broker
    broker.stop()
