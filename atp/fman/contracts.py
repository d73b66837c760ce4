"""Electronic open flexibility contracts between an aggregator and its prosumers (F2.FMAN3).

Two kinds of contract (D2.1 3.3):

- `DelegatedContract`: the aggregator values the flexibility itself. The prosumer is rewarded
  for the flexibility it *offers* (hours of time flexibility per kW, kWh of energy flexibility,
  flexible kWh) and, on top, for the adaptation it *delivers* (activation payment per kWh).
  Deviation from the assigned schedule beyond `imbalance_tolerance_share` of the scheduled
  energy costs `penalty_eur_per_kwh`.
- `DirectContract`: the prosumer is paid the offer's own `price.per_kwh_deviation` per kWh of
  delivered adaptation (or `price_eur_per_kwh_deviation` when the contract fixes it), with an
  optional tolerance and penalty as in the delegated contract. With `pays_both_ways` a kWh of
  delivered deviation from the default counts in either direction, as the market pays it
  (a direct member of the FMAN's market bids: `atp.fman.settlement.DIRECT_MEMBER_CONTRACT`).

Contracts are frozen and validated on construction; a wrong field raises `ContractError`
naming the field. `contract_from_dict` reads the JSON form
(`{"kind": "delegated", "activation_eur_per_kwh": 0.1, ...}`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from atp.fman.errors import FmanError

__all__ = ["Contract", "ContractError", "DelegatedContract", "DirectContract", "contract_from_dict"]


class ContractError(FmanError):
    """A contract field that is missing, unknown or out of range; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(field, message, message=f"contract field {field!r}: {message}")
        self.field = field


def _check_amount(name: str, value: object) -> None:
    """A finite, non-negative number (EUR rates and penalties)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ContractError(name, f"must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise ContractError(name, f"must be a finite number >= 0, got {value!r}")


def _check_share(name: str, value: object) -> None:
    """A share in [0, 1]."""
    _check_amount(name, value)
    if value > 1:  # type: ignore[operator]
        raise ContractError(name, f"is a share and must lie in [0, 1] (e.g. 0.1 for 10 %), got {value!r}")


@dataclass(frozen=True)
class DelegatedContract:
    """Rewards for offered flexibility and delivered adaptation, with an imbalance tolerance."""

    reward_eur_per_h_kw_time_flexibility: float = 0.0
    reward_eur_per_kwh_energy_flexibility: float = 0.0
    reward_eur_per_flexible_kwh: float = 0.0
    activation_eur_per_kwh: float = 0.0
    imbalance_tolerance_share: float = 0.0
    penalty_eur_per_kwh: float = 0.0

    kind = "delegated"

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "imbalance_tolerance_share":
                _check_share(f.name, value)
            else:
                _check_amount(f.name, value)


@dataclass(frozen=True)
class DirectContract:
    """Pays the offer's own price per kWh of delivered deviation from its default schedule.

    `price_eur_per_kwh_deviation`, when given, replaces the offer's `price.per_kwh_deviation`.
    `pays_both_ways`: False (the settlement's rule for every contract) pays only energy moved
    into a step, so that an inflated default is never paid more; True pays a deviation in
    either direction, as far as it was both scheduled and metered, which is how the market pays
    a direct offer (and the aggregator for the bid its direct members are in): the deviation
    price is the offer's ask for either direction (docs/spec/flexoffer.md `price`).
    """

    price_eur_per_kwh_deviation: float | None = None
    imbalance_tolerance_share: float = 0.0
    penalty_eur_per_kwh: float = 0.0
    pays_both_ways: bool = False

    kind = "direct"

    def __post_init__(self) -> None:
        if not isinstance(self.pays_both_ways, bool):
            raise ContractError("pays_both_ways", f"must be true or false, got {self.pays_both_ways!r}")
        if self.price_eur_per_kwh_deviation is not None:
            _check_amount("price_eur_per_kwh_deviation", self.price_eur_per_kwh_deviation)
        _check_share("imbalance_tolerance_share", self.imbalance_tolerance_share)
        _check_amount("penalty_eur_per_kwh", self.penalty_eur_per_kwh)


Contract = DelegatedContract | DirectContract

_KINDS: dict[str, type[DelegatedContract] | type[DirectContract]] = {
    "delegated": DelegatedContract,
    "direct": DirectContract,
}


def contract_from_dict(data: Mapping[str, Any]) -> Contract:
    """The contract a JSON object describes; `kind` is "delegated" or "direct".

    Unknown keys are refused (a misspelt rate must not silently become 0).
    """
    if not isinstance(data, Mapping):
        raise ContractError("kind", f"a contract must be a JSON object, got {type(data).__name__}")
    kind = data.get("kind")
    if kind not in _KINDS:
        raise ContractError("kind", f"must be one of {sorted(_KINDS)}, got {kind!r}")
    cls = _KINDS[kind]
    known = {f.name for f in fields(cls)}
    for key in data:
        if key != "kind" and key not in known:
            raise ContractError(str(key), f"is not a field of a {kind} contract (known: {sorted(known)})")
    return cls(**{k: v for k, v in data.items() if k != "kind"})
