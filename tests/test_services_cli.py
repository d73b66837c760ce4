"""`goflex-atp serve` options for the service limits and connection timeouts, over the real command.

One test runs the command as a subprocess with small limits and checks that the server applies
them (page size, body size, header timeout, no access log); the others check that a bad value
is one line naming the option, exit code 2, and that the help states ServiceLimits' defaults.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from atp.cli import _CONNECTION_OPTIONS, _LIMIT_OPTIONS, main
from atp.flexoffer import DefaultSchedule, encode
from atp.interface.limits import HEADER_TIMEOUT_S, IDLE_TIMEOUT_S, ServiceLimits
from tests.http_support import TOKEN_OF, ev_offer, wait_until

ROOT = Path(__file__).resolve().parents[1]
P17 = "foss-p017"
AUTH17 = {"Authorization": f"Bearer {TOKEN_OF[P17]}"}


def _tokens(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.yaml"
    path.write_text(f"parties:\n  {TOKEN_OF[P17]}: {P17}\n")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _offer_json(n: int) -> bytes:
    """The EV example for tomorrow (the command runs on wall-clock time), device `ev-n`."""
    offer = ev_offer(P17)
    start = (datetime.now(UTC) + timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
    assert offer.start_after is not None and offer.start_before is not None and offer.default_schedule is not None
    delta = start - offer.start_after
    moved = dataclasses.replace(
        offer,
        device=f"ev-{n}",
        created_at=None,
        assignment_before=start - timedelta(minutes=15),
        start_after=start,
        start_before=offer.start_before + delta,
        default_schedule=DefaultSchedule(start, offer.default_schedule.profile, offer.default_schedule.energy),
    )
    return json.dumps(encode(moved)).encode()


def _serving(proc: subprocess.Popen, url: str) -> bool:
    """True once the command answers on `url` (False when it stopped first)."""

    def up() -> bool:
        try:
            httpx.get(f"{url}/kpi", headers=AUTH17, timeout=2)
        except httpx.TransportError:
            return proc.poll() is not None
        return True

    return wait_until(up, timeout_s=30) and proc.poll() is None


def test_access_log_lines_only_with_the_option(tmp_path):
    port = _free_port()
    command = [sys.executable, "-m", "atp.cli", "serve", "--role", "fmar", "--port", str(port), "--access-log"]
    command += ["--tokens", str(_tokens(tmp_path)), "--store", "memory", "--log-level", "info"]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert _serving(proc, f"http://127.0.0.1:{port}"), proc.stderr.read() if proc.stderr else ""
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert '"GET /kpi HTTP/1.1" 200' in out  # uvicorn's access log writes to stdout


def test_the_limit_options_change_what_the_served_receiver_applies(tmp_path):
    port = _free_port()
    command = [sys.executable, "-m", "atp.cli", "serve", "--role", "fmar", "--port", str(port)]
    command += ["--tokens", str(_tokens(tmp_path)), "--store", f"sqlite:///{tmp_path / 'fmar.db'}"]
    command += ["--log-level", "info", "--max-page-size", "5", "--default-page-size", "2"]
    command += ["--max-body-bytes", "4000", "--header-timeout-s", "0.5"]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        assert _serving(proc, url), proc.stderr.read() if proc.stderr else ""
        with httpx.Client(base_url=url, headers=AUTH17, timeout=10) as client:
            body = _offer_json(0)
            assert len(body) < 4000
            for n in range(3):
                answer = client.post("/flexoffer", content=_offer_json(n), headers={"Content-Type": "application/json"})
                assert answer.status_code == 201, answer.text
            large = client.post("/flexoffer", content=b" " * 4001, headers={"Content-Type": "application/json"})
            assert large.status_code == 413 and "4000" in large.json()["error"]
            assert client.get("/flexoffer", params={"limit": 5}).status_code == 200
            refused = client.get("/flexoffer", params={"limit": 6})
            assert refused.status_code == 422 and refused.json()["details"][0]["path"] == "limit"
            assert "5" in refused.json()["details"][0]["message"]
            first = client.get("/flexoffer")  # --default-page-size 2: two of the three, and a next page
            assert len(first.json()) == 2 and 'rel="next"' in first.headers["link"]
        with socket.create_connection(("127.0.0.1", port), timeout=HEADER_TIMEOUT_S / 2) as s:
            s.sendall(b"GET /kpi HTTP/1.1\r\nHost: x\r\n")  # a head never finished
            assert s.recv(100) == b""  # closed after 0.5 s, well before the default 10 s
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=20)
    assert f"serving fmar on http://127.0.0.1:{port}" in out
    assert "Traceback" not in err
    assert "/flexoffer HTTP/1.1" not in out + err  # no access log unless --access-log


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--max-page-size", "0"], "--max-page-size 0: must be >= 1"),
        (["--max-page-size", "many"], "--max-page-size many: not a whole number"),
        (["--max-body-bytes", "1.5"], "--max-body-bytes 1.5: not a whole number"),
        (
            ["--default-page-size", "200", "--max-page-size", "100"],
            "--default-page-size 200: must be <= --max-page-size 100",
        ),
        (["--default-page-size", "2000"], "--default-page-size 2000: must be <= --max-page-size 1000"),
        (["--body-timeout-s", "0"], "--body-timeout-s 0: must be > 0"),
        (["--body-timeout-s", "nan"], "--body-timeout-s nan: not a finite number"),
        (["--body-timeout-s", "soon"], "--body-timeout-s soon: not a number"),
        (["--max-active-offers", "-3"], "--max-active-offers -3: must be >= 1"),
        (["--max-measurements", "0"], "--max-measurements 0: must be >= 1"),
        (["--measurement-margin-s", "-1"], "--measurement-margin-s -1: must be >= 0"),
        (["--max-timeseries-steps", "0"], "--max-timeseries-steps 0: must be >= 1"),
        (["--header-timeout-s", "-1"], "--header-timeout-s -1: must be > 0"),
        (["--header-timeout-s", "inf"], "--header-timeout-s inf: not a finite number"),
        (["--idle-timeout-s", "0"], "--idle-timeout-s 0: must be >= 1"),
    ],
)
def test_a_bad_limit_is_one_line_naming_the_option_and_exit_code_2(tmp_path, capsys, options, message):
    argv = ["serve", "--role", "fmar", "--tokens", str(_tokens(tmp_path)), "--store", "memory", *options]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err == f"goflex-atp: {message}\n"


def test_the_options_cover_every_limit_and_the_help_states_its_default(capsys):
    fields = {f.name for f in dataclasses.fields(ServiceLimits)}
    assert {field for _, field, _, _ in _LIMIT_OPTIONS} == fields
    defaults = {**dataclasses.asdict(ServiceLimits()), "header_timeout_s": HEADER_TIMEOUT_S}
    defaults["idle_timeout_s"] = IDLE_TIMEOUT_S
    for flag, field, kind, text in _LIMIT_OPTIONS + _CONNECTION_OPTIONS:
        value = defaults[field]
        assert f"(default {value:g})" in text if isinstance(value, float) else f"(default {value})" in text, flag
        assert isinstance(defaults[field], kind) or kind is float, flag
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    shown = capsys.readouterr().out
    assert all(flag in shown for flag, _, _, _ in _LIMIT_OPTIONS + _CONNECTION_OPTIONS)
    assert "--access-log" in shown
