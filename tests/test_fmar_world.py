"""The market mechanisms in the world: `market=two_sided_pool` and `market=many_to_many` on a site.

Short sww runs (the quickest site): the configured mechanism and pricing rule clear the
sessions, every awarded schedule is feasible for its offer, and the market's money balances;
with `market.intraday.gates` the sessions follow the market calendar (F2.FMAR5).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from atp.flexoffer import check_schedule
from atp.fmar import ManyToMany, TwoSidedPool
from atp.interface import RequestState
from sim.config import ConfigError
from sim.world import World
from tests.test_world import config_for

HALF_DAY = ("scenario=sww", "sim.days=0.5", "sim.start=2026-01-12T06:00:00Z")


@pytest.mark.parametrize(
    ("overrides", "cls", "pricing"),
    [
        (("market=two_sided_pool",), TwoSidedPool, "uniform"),
        (("market=many_to_many",), ManyToMany, "uniform"),
        (("market=many_to_many", "market.pricing=pay_as_bid"), ManyToMany, "pay_as_bid"),
        (("market=many_to_many", "market.transport.hub_fee_eur_per_kwh=0.01"), ManyToMany, "uniform"),
    ],
)
def test_mechanism_runs_in_the_world_with_feasible_schedules_and_balanced_money(overrides, cls, pricing):
    world = World(config_for(*HALF_DAY, *overrides))
    market = world.market_operator.market
    assert isinstance(market.mechanism, cls) and market.mechanism.pricing.value == pricing
    world.run()
    results = market.results
    assert results and sum(r.n_awards for r in results) > 0
    assert {r.mechanism for r in results} == {cls.name}
    for r in results:
        assert r.buyer_pays_eur == pytest.approx(r.sellers_receive_eur + r.transport_fees_eur + r.surplus_eur)
        assert r.buyer_pays_eur <= r.cutoff_eur_per_kwh * r.cleared_total_kwh + 1e-9
        for a in r.awards:
            assert a.price_eur >= -1e-9
    clearings = market.mechanism.clearings
    assert sum(c.buyers_pay_eur for c in clearings) == pytest.approx(sum(r.buyer_pays_eur for r in results))
    assert all(c.surplus_eur >= -1e-6 for c in clearings) if pricing == "uniform" else True
    assigned = 0
    for record in market.store.records():
        if record.schedule is not None:
            assigned += 1
            assert check_schedule(record.offer, record.schedule) == [], record.offer.id
    assert assigned > 0
    # Every request reached the market through the exchange interface, and its buyer reads what cleared.
    posted = {record.request.id: record for record in market.store.request_records()}
    assert len(posted) == len(results)
    for r in results:
        record = posted[r.request_id]
        assert record.owner == r.buyer and record.state is RequestState.CLEARED
        assert record.result is not None and record.result.cleared_kwh == r.cleared_kwh


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("market.mechanism=lottery", "market.mechanism"),
        ("+market.pricing=vickrey", "market.pricing"),
        ("+market.max_starts=0", "market.max_starts"),
        ("market.intraday.gates=12:00", "market.intraday.gates"),
        ("market.intraday.gates=[25:00]", r"market.intraday.gates\[0\]"),
        ("market.intraday.lead_s=100", "market.intraday.lead_s"),
    ],
)
def test_bad_market_settings_name_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        config_for("scenario=sww", override, *(("market.intraday.gates=[06:00]",) if "lead_s" in override else ()))


def test_bad_transport_link_names_the_key():
    link = "+market.transport.links=[{from_zone: a, to_zone: b, fee_eur_per_kwh: -1, capacity_kwh: 2}]"
    with pytest.raises(ConfigError, match=r"market\.transport\.links\[0\]\.fee_eur_per_kwh"):
        config_for("scenario=sww", "market=many_to_many", link.replace("+", ""))
    with pytest.raises(ConfigError, match=r"market\.pricing"):
        config_for("scenario=sww", "+market.pricing=uniform")  # the one-sided pool pays as bid


def test_a_market_calendar_clears_at_its_gates_only():
    """F2.FMAR5 in the world: day-ahead and intraday sessions at the calendar's gates, DSO local
    sessions on demand; nothing else clears, and each session's money balances."""
    world = World(
        config_for(
            "scenario=sww",
            "sim.days=1",
            "sim.start=2026-01-12T10:00:00Z",
            "market=many_to_many",
            "market.intraday.gates=[14:00, 20:00]",
        )
    )
    world.run()
    market = world.market_operator.market
    tz = world.config.site.timezone
    sessions = {s.name: s for s in market.sessions}
    results = market.results
    assert results
    kinds = {r.session.split("-")[0] for r in results}
    assert kinds <= {"da", "id", "local"} and "id" in kinds and "local" in kinds
    for name, session in sessions.items():
        gate = session.gate_closure.astimezone(tz)
        if name.startswith("id-"):
            assert gate.strftime("%H:%M") in {"14:00", "20:00"}
            assert session.delivery_start - session.gate_closure >= timedelta(seconds=900)
        elif name.startswith("da-"):
            assert (
                gate.strftime("%H:%M") == "12:00" and session.delivery_start.astimezone(tz).strftime("%H:%M") == "00:00"
            )
        else:
            assert name.startswith("local-") and session.opens_at is not None  # on demand
    # the run spans a day-ahead gate: the BRP's next-day volume is in that session
    assert any(r.session.startswith("da-") and r.buyer.endswith("brp") for r in results)
    for r in results:
        assert r.buyer_pays_eur == pytest.approx(r.sellers_receive_eur + r.transport_fees_eur + r.surplus_eur)
        session = sessions[r.session]
        assert session.delivery_start <= r.start < session.delivery_end
        if r.session.startswith("local-"):
            assert "dso" in r.buyer  # a local session holds the registering DSO's volume only
    for record in market.store.records():
        if record.schedule is not None:
            assert check_schedule(record.offer, record.schedule) == [], record.offer.id
