"""The world against real services with an FMAN that bids (`fman=market_bidding`,
`atp.deployment=services`): its own file, so that it runs beside tests/test_world_services.py on
another worker."""

from __future__ import annotations

from sim.app import run
from tests.test_world import config_for


def test_an_fman_that_bids_through_the_served_market_equals_the_in_process_run(tmp_path) -> None:
    """Direct offers through the FMAN, bid into the FMAR: awards reach the served FMAN when the
    run syncs it (POST /fman/market/sync), its members' FOAs hear their schedules, deliveries settle."""
    short = ("scenario=sww", "fman=market_bidding", "sim.days=0.5", "sim.warmup_s=10800", "sim.tail_s=10800")
    a = run(config_for(*short, "output.report=false"), tmp_path / "in-process")
    b = run(config_for(*short, "output.report=false", "atp.deployment=services"), tmp_path / "services")
    assert a["fman"]["bids"] > 0 and a["fman"]["bids_awarded"] > 0 and a["market"]["delivered_kwh"] > 0
    assert a == b
    assert (tmp_path / "services" / "atp" / "fman-at-fmar.token").stat().st_mode & 0o077 == 0
