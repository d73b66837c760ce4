"""The FMAN as a service: planning rounds beside the HTTP binding, over a real socket."""

from __future__ import annotations

import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from atp.flexoffer import OfferState, check_schedule
from atp.fman import AggregationParams, FlexOfferManager, PriceSeries
from atp.fman.rounds import PlanningRounds
from atp.fman.service import PlanningLoop, PriceFileError, load_prices
from atp.interface import HttpClient, OfferStore, create_app
from atp.interface.serve import ServerThread
from tests.http_support import TOKEN_OF, TOKENS, Clock, ev_offer, wait_until
from tests.test_interface_http import ROOT, shifted, write

P17 = "foss-p017"
SIX_PM = datetime(2026, 11, 25, 18, tzinfo=UTC)


def test_a_planning_round_assigns_offers_submitted_over_http() -> None:
    clock = Clock(datetime(2026, 11, 25, 12, tzinfo=UTC))
    store = OfferStore("fman", clock=clock)
    app = create_app(store, tokens=TOKENS, sse_keepalive_s=0.2)
    prices = np.full(96, 0.30)
    prices[76:84] = 0.05  # cheap from 19:00 to 21:00
    fman = FlexOfferManager(store, name="fman", params=AggregationParams())
    rounds = PlanningRounds(fman, PriceSeries(datetime(2026, 11, 25, tzinfo=UTC), 900, prices))
    loop = PlanningLoop(rounds, every_s=60, lock=app.state.lock, clock=clock)
    with ServerThread(app, graceful_s=0.2) as server:
        client = HttpClient(server.url, TOKEN_OF[P17], party=P17, retries=0)
        events = []
        unsubscribe = client.subscribe(events.append)
        offer = client.submit(ev_offer())  # EV: 18:00-21:45 window, 8 steps
        result = loop.plan_now()
        assert result is not None and result.n_assigned == 1 and loop.errors == []
        got = client.get(offer.id)
        assert got.state is OfferState.ASSIGNED and check_schedule(got, got.schedule) == []
        assert got.schedule.start >= datetime(2026, 11, 25, 19, tzinfo=UTC)  # moved into the cheap hours
        assert wait_until(lambda: any(e.kind == "assigned" for e in events))
        unsubscribe()
        client.close()


def test_a_failed_round_is_recorded_and_the_loop_goes_on() -> None:
    store = OfferStore("fman")
    fman = FlexOfferManager(store, name="fman", params=AggregationParams())
    loop = PlanningLoop(PlanningRounds(fman, PriceSeries(SIX_PM, 900, np.zeros(4))), every_s=0.01)
    fman.plan = lambda *a, **k: 1 / 0  # a round that breaks
    with loop:
        assert wait_until(lambda: len(loop.errors) >= 2)
    assert "ZeroDivisionError" in loop.errors[0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("when,price\n", "needs a header 'time,eur_per_kwh'"),
        ("time,eur_per_kwh\n2026-11-25T00:00:00Z,0.1\n2026-11-25T01:00:00Z,x\n", "line 3: eur_per_kwh 'x'"),
        ("time,eur_per_kwh\n2026-11-25T00:00:00,0.1\n2026-11-25T01:00:00Z,0.1\n", "line 2: time .* has no timezone"),
        (
            "time,eur_per_kwh\n2026-11-25T00:00:00Z,0.1\n2026-11-25T01:00:00Z,0.1\n2026-11-25T03:00:00Z,0.1\n",
            "regular grid",
        ),
        ("time,eur_per_kwh\n2026-11-25T00:00:00Z,0.1\n", "at least two rows"),
    ],
)
def test_bad_price_files_name_the_file_and_line(tmp_path, text, message) -> None:
    with pytest.raises(PriceFileError, match=message):
        load_prices(write(tmp_path / "prices.csv", text))


def test_a_good_price_file(tmp_path) -> None:
    series = load_prices(
        write(tmp_path / "p.csv", "time,eur_per_kwh\n2026-11-25T00:00:00Z,0.1\n2026-11-25T01:00Z,0.2\n")
    )
    assert series.slice_s == 3600 and list(series.values_eur_per_kwh) == [0.1, 0.2]


def test_serve_fman_with_prices_plans_offers_on_wall_clock_time(tmp_path) -> None:
    """`goflex-atp serve --role fman --prices` as a real process: an offer submitted over HTTP
    comes back assigned after the next planning round."""
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    rows = [f"{(hour + timedelta(hours=h)).isoformat()},{0.05 if h == 5 else 0.3}" for h in range(48)]
    prices = write(tmp_path / "prices.csv", "time,eur_per_kwh\n" + "\n".join(rows) + "\n")
    tokens = write(tmp_path / "tokens.yaml", f"parties:\n  {TOKEN_OF[P17]}: {P17}\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "atp.cli", "serve", "--role", "fman", "--port", str(port)]
    command += ["--tokens", str(tokens), "--prices", str(prices), "--plan-every", "0.5", "--log-level", "warning"]
    command += ["--store", f"sqlite:///{tmp_path / 'fman.db'}"]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    client = HttpClient(f"http://127.0.0.1:{port}", TOKEN_OF[P17], party=P17, retries=0, timeout_s=2)
    try:

        def up() -> bool:
            try:
                client.active()
            except Exception:  # not listening yet
                return proc.poll() is not None
            return True

        assert wait_until(up, timeout_s=30) and proc.poll() is None
        offer = client.submit(shifted(ev_offer(), hour + timedelta(hours=3)))
        assert wait_until(lambda: client.get(offer.id).state is OfferState.ASSIGNED, timeout_s=30)
        got = client.get(offer.id)
        assert check_schedule(got, got.schedule) == []
    finally:
        client.close()
        proc.terminate()
        out, err = proc.communicate(timeout=20)
    assert "planning every 0.5 s" in out
    assert "Traceback" not in err


def test_prices_are_refused_for_a_market(tmp_path, capsys) -> None:
    from atp.cli import main

    tokens = write(tmp_path / "tokens.yaml", f"parties:\n  {TOKEN_OF[P17]}: {P17}\n")
    prices = write(tmp_path / "p.csv", "time,eur_per_kwh\n2026-11-25T00:00:00Z,0.1\n2026-11-25T01:00Z,0.2\n")
    assert main(["serve", "--role", "fmar", "--tokens", str(tokens), "--prices", str(prices)]) != 0
    assert "--prices: only an fman plans" in capsys.readouterr().err
