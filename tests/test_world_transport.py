"""Implicit capacity trading in the world: the DSO's network-derived links reach the market."""

from __future__ import annotations

import pytest

from atp.flexoffer import check_schedule
from sim.config import ConfigError
from sim.world import World
from tests.test_world import config_for


def test_the_dsos_links_between_feeders_are_the_markets_links():
    world = World(
        config_for(
            "scenario=sww",
            "market=many_to_many",
            "fman=market_bidding",
            "sim.days=0.25",
            "sim.start=2026-01-12T14:00:00Z",
        )
    )
    world.run()
    assert world.dso.transport, "the DSO derived transport links at its forecasts"
    published = world.dso.transport[-1][1]
    assert len(published) > 0
    links = {(link.from_zone, link.to_zone): link for link in world.market_operator.market.mechanism.links}
    for row in published.itertuples(index=False):
        link = links[(row.from_zone, row.to_zone)]
        assert link.fee_eur_per_kwh == pytest.approx(row.fee_eur_per_kwh)
        assert link.capacity_kwh == pytest.approx(row.capacity_kwh)
    for result in world.market_operator.market.results:
        assert result.buyer_pays_eur == pytest.approx(
            result.sellers_receive_eur + result.transport_fees_eur + result.surplus_eur, abs=0.01
        )
    for store in (world.aggregator.store, world.market_operator.market.store):
        for record in store.records():
            if record.schedule is not None:
                assert check_schedule(record.offer, record.schedule) == []


def test_links_from_the_grid_need_the_many_to_many_market():
    with pytest.raises(ConfigError, match=r"market\.transport\.from_grid"):
        config_for("scenario=sww", "market=two_sided_pool", "+market.transport.from_grid=true")
