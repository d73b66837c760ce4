"""Two-sided pool auction (D2.1 F2.FMAR2): pooled DR offers against several competing buyers.

All direct offers of a session (prosumers' boxes, an aggregator's aggregates) form one pool;
every buyer (BRPs, DSOs) bids its volume per step with a limit price. In each step and
direction the pool's merit order (cheapest first) meets the buyers' demand curve (highest
limit first) and the crossing volume is traded: the welfare-maximising double auction. A
buyer with a congestion point can only be served by offers located there, a buyer without
one by any offer, so the crossing is a small transport problem rather than a sort; it is
solved exactly as the linear special case of the many-to-many clearing: every offer at its
default start, only its default profile, divisible, no transport fees.

Pricing: `uniform` (default; the clearing price of each step and direction, per congestion
point where those are cut off from the rest) or `pay_as_bid`. With divisible bids nothing is
paradoxically accepted, so no bid is ever removed.
"""

from __future__ import annotations

from atp.fmar.market import register_mechanism
from atp.fmar.pricing import Pricing
from atp.fmar.session_clearing import ManyToMany

__all__ = ["TwoSidedPool"]


@register_mechanism
class TwoSidedPool(ManyToMany):
    """The two-sided pool as a market mechanism; options: `pricing`, `time_limit_s`."""

    name = "two_sided_pool"
    version = "1.0.0"

    def __init__(self, *, pricing: Pricing | str = Pricing.UNIFORM, time_limit_s: float = 60.0) -> None:
        super().__init__(
            pricing=pricing,
            links=(),
            hub_fee_eur_per_kwh=0.0,
            hub_capacity_kwh=None,
            max_starts=1,
            xor_profiles=False,
            time_limit_s=time_limit_s,
        )
