"""Crash test: `goflex-atp serve` killed with SIGKILL and restarted while a client process posts
offers and follows the event stream, on SQLite and on PostgreSQL.

Real processes, real sockets, real databases. Afterwards every offer that was answered 201 is
in the store exactly once (with the id its 201 named), no offer is there twice (a post retried
after a kill carries the same Idempotency-Key), and the client's stream delivered every event
from 1 to the last, each once, across all restarts (resumed with Last-Event-ID).
"""

from __future__ import annotations

import collections
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from atp.interface import HttpClient
from tests.http_support import OPERATOR_TOKEN, TOKEN_OF, wait_until
from tests.store_backends import DURABLE, backend_fixture, store_urls_fixture  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parents[1]
PARTY = "foss-p017"
KILLS = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Servers:
    """`goflex-atp serve` processes on one port and store: the running one, and a standby that
    has loaded its modules and starts serving when told (`tests/crash_server.py`)."""

    def __init__(self, port: int, tokens: Path, store_url: str, folder: Path) -> None:
        self.port, self.folder, self.log = port, folder, folder / "server.log"
        self._args = ["serve", "--role", "fmar", "--port", str(port), "--tokens", str(tokens), "--store", store_url]
        self._args += ["--log-level", "error"]
        self._n = 0
        self._standby = self._spawn()
        self.proc = self.restart()

    def _spawn(self) -> tuple[subprocess.Popen, Path]:
        self._n += 1
        go = self.folder / f"go-{self._n}"
        with self.log.open("a") as out:
            command = [sys.executable, "-m", "tests.crash_server", str(go), *self._args]
            return subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT), go

    def restart(self) -> subprocess.Popen:
        """Let the standby serve, wait until it answers, and spawn the next standby."""
        proc, go = self._standby
        go.write_text("")
        probe = HttpClient(f"http://127.0.0.1:{self.port}", OPERATOR_TOKEN, party="operator", retries=0, timeout_s=1)
        try:

            def up() -> bool:
                try:
                    probe.kpi()
                except Exception:  # not listening yet
                    return proc.poll() is not None
                return True

            assert wait_until(up, timeout_s=30) and proc.poll() is None, self.log.read_text()
        finally:
            probe.close()
        self._standby = self._spawn()
        self.proc = proc
        return proc

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        assert self.proc.returncode == -signal.SIGKILL

    def stop(self) -> None:
        for proc in (self.proc, self._standby[0]):
            proc.terminate()
            proc.wait(timeout=20)


@pytest.mark.parametrize("backend", DURABLE, indirect=True)
def test_offers_and_events_survive_kill_9_restarts(store_urls, tmp_path):
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(f"parties:\n  {TOKEN_OF[PARTY]}: {PARTY}\noperators:\n  - {OPERATOR_TOKEN}\n")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    servers = Servers(port, tokens, store_urls.url(), tmp_path)
    client = subprocess.Popen(
        [sys.executable, "-m", "tests.crash_client", url, TOKEN_OF[PARTY], PARTY, str(tmp_path)],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    acked = tmp_path / "acked.txt"
    try:
        for _ in range(KILLS):
            # Kill while offers flow: after some more 201s than before.
            floor = len(acked.read_text().splitlines()) if acked.exists() else 0
            assert wait_until(lambda f=floor: acked.exists() and len(acked.read_text().splitlines()) > f + 10, 30)
            servers.kill()
            servers.restart()
        assert wait_until(lambda: len(acked.read_text().splitlines()) > floor + 20, 30)
        (tmp_path / "stop").write_text("")
        _, err = client.communicate(timeout=60)
        assert client.returncode == 0 and (tmp_path / "done").exists(), err

        operator = HttpClient(url, OPERATOR_TOKEN, party="operator", timeout_s=5)
        stored = operator.active()
        operator.close()
    finally:
        if client.poll() is None:
            client.kill()
        servers.stop()

    answered = dict(line.split() for line in acked.read_text().splitlines())
    by_device = collections.Counter(o.device for o in stored)
    assert max(by_device.values()) == 1  # no offer twice, whatever was retried
    ids = {o.device: o.id for o in stored}
    assert all(ids.get(f"ev-{i}") == offer_id for i, offer_id in answered.items())  # every 201 is stored
    assert len(answered) > KILLS * 10

    events = [line.split() for line in (tmp_path / "events.txt").read_text().splitlines()]
    seqs = [int(seq) for seq, _, _ in events]
    assert seqs == list(range(1, len(seqs) + 1))  # no gap, no repeat, across every restart
    assert len(seqs) == int((tmp_path / "done").read_text())
    assert [offer_id for _, kind, offer_id in events if kind == "accepted"] == [o.id for o in stored]
    assert "Traceback" not in servers.log.read_text()
