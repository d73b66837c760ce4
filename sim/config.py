"""The run configuration: the composed Hydra config checked and turned into typed dataclasses.

`load_run_config(cfg)` checks every key the world reads and raises `ConfigError` with one
sentence naming the key (e.g. `sim.days: must be at least 1, not -2`) before anything runs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from atp.fman import Contract, ContractError, DelegatedContract, contract_from_dict
from atp.fmar import InvalidRequestError, Pricing, TransportLink, check_links, mechanism_names
from sim.sources import CLIMATES, PRICE_MODELS

__all__ = [
    "SETTLEMENT_BASELINES",
    "BiddingConfig",
    "BrpConfig",
    "ConfigError",
    "DeviceMix",
    "DsoConfig",
    "DsoStrategyConfig",
    "FmanConfig",
    "GridConfig",
    "MarketConfig",
    "RunConfig",
    "SiteConfig",
    "load_run_config",
]

SECONDS_PER_DAY = 86_400
DEFAULT_CONTRACT = DelegatedContract(activation_eur_per_kwh=0.05, imbalance_tolerance_share=0.1)
"""The delegated prosumers' contract when fman.contract is not given: 5 ct per kWh of delivered
adaptation, 10 % imbalance tolerance, no penalty."""
_FMAN_OBJECTIVES = ("least_cost", "peak_shaving", "balance_imbalance")  # the world supplies their series
SETTLEMENT_BASELINES = ("in_force", "characteristic", "twin")
"""fman.settlement_baseline: the default schedule in force per device and step, the KIBERnet
characteristic baseline from the warm-up's metered history, or the uncontrolled twin."""


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the key and says what is expected."""


@dataclass(frozen=True)
class DeviceMix:
    """How many prosumers of each trading mode have a device of one load type, and its parameters."""

    load_type: str
    delegated: int
    direct: int
    params: Any  # the kind's typed parameters (sim/agents/kinds.py)


@dataclass(frozen=True)
class BrpConfig:
    imbalance_kwh_per_prosumer: float
    cutoff_eur_per_kwh: float


@dataclass(frozen=True)
class DsoConfig:
    transformer_kw: float
    cutoff_eur_per_kwh: float


@dataclass(frozen=True)
class SiteConfig:
    name: str
    title: str
    timezone: ZoneInfo
    climate: str
    price_model: str
    grid_code: str
    delegated: int
    direct: int
    household_kwh_per_year: tuple[float, float]
    commercial_share: float
    commercial_kwh_per_year: tuple[float, float]
    pv_share: float
    pv_kwp: tuple[float, float]
    direct_price_eur_per_kwh: tuple[float, float]
    brp: BrpConfig
    dso: DsoConfig

    @property
    def n_prosumers(self) -> int:
        return self.delegated + self.direct


@dataclass(frozen=True)
class MarketConfig:
    mechanism: str
    day_ahead_gate_closure: time
    intraday_horizon_steps: int
    dso_forecast_times: tuple[time, ...]
    dso_horizon_steps: int
    pricing: str | None = None  # None: the mechanism's own rule (one_sided_pool: pay-as-bid)
    links: tuple[TransportLink, ...] = ()
    hub_fee_eur_per_kwh: float | None = 0.0
    hub_capacity_kwh: float | None = None
    max_starts: int = 1
    links_from_grid: bool = False  # many-to-many: the DSO's links from the network replace same-pair links
    intraday_gates: tuple[time, ...] | None = None  # None: a rolling session every step; else the calendar's gates
    intraday_lead_s: int = 900  # calendar: delivery starts this long after an intraday gate
    shortfall_penalty_eur_per_kwh: float = 0.0  # a seller's penalty per kWh awarded and not delivered (sim/delivery.py)

    def mechanism_options(self) -> dict[str, Any]:
        """Keyword options for `create_mechanism(self.mechanism, ...)`."""
        if self.mechanism == "many_to_many":
            return {
                "pricing": self.pricing or "uniform",
                "links": self.links,
                "hub_fee_eur_per_kwh": self.hub_fee_eur_per_kwh,
                "hub_capacity_kwh": self.hub_capacity_kwh,
                "max_starts": self.max_starts,
            }
        if self.mechanism == "two_sided_pool":
            return {"pricing": self.pricing or "uniform"}
        return {}


@dataclass(frozen=True)
class BiddingConfig:
    """The FMAN's market bidding (fman.bidding): prices of its bids and the reference price
    (None = the BRP's cut-off) a bid must beat to be made. `large_kw_threshold`: direct offers
    whose peak power is below it go to the FMAN, which bids them, the others straight to the
    FMAR (`atp.foa.pricing.route_for`; None = every direct offer to the FMAR)."""

    cost_eur_per_kwh: float
    margin_eur_per_kwh: float
    max_volume_kwh: float | None
    reference_eur_per_kwh: float | None
    large_kw_threshold: float | None = None


@dataclass(frozen=True)
class FmanConfig:
    objective: str
    planning_interval_s: int
    horizon_steps: int
    start_tolerance_s: int
    max_group_size: int
    time_limit_s: float
    bidding: BiddingConfig | None = None
    contract: Contract = DEFAULT_CONTRACT
    settlement_baseline: str = "in_force"  # one of SETTLEMENT_BASELINES (sim/ledger.py settles against it)
    min_box_share: float | None = 0.9  # atp.fman.AggregationParams.min_box_share (None: box every member)


@dataclass(frozen=True)
class GridConfig:
    kind: str
    code: str
    file: Path | None
    transformer_kva: float | None = None  # None: the network's own rating
    line_rating_scale: float | None = 1.0  # None: "auto", prosumers per network load bus (at least 1)
    max_loading_percent: float = 100.0
    vm_pu: tuple[float, float] = (0.9, 1.1)


DSO_STRATEGIES = ("no_flex", "aggregator_only", "local_market", "direct_control", "dynamic_tariff")


@dataclass(frozen=True)
class DsoStrategyConfig:
    """The DSO's congestion strategy (sim/agents/dso.py) and its parameters."""

    strategy: str = "local_market"
    forecast_interval_s: int | None = 3600  # None: at market.dso.forecast_times
    tariff_eur_per_kwh: float = 0.2
    direct_control_load_types: tuple[str, ...] = ("heat_pump", "water_heater", "ev")
    capacity_margin_percent: float = 5.0  # grid-aware planning: the published capacity keeps this below the limit
    capacity_sensitivity_steps: int = 4  # grid sensitivities every this many steps of the capacity horizon
    capacity_horizon_steps: int = 96  # steps the published capacity covers
    capacity_new_overload_weight: float = 10.0  # penalty weight where an excess would make a new overload
    tariff_credit_eur_per_kwh: float = 0.1  # dynamic_tariff: credit on the steps just before congestion
    tariff_credit_s: int = 14400  # ... this long before it
    oracle: bool = True  # no_flex runs compute the perfect-foresight bound (sim/oracle.py)


@dataclass(frozen=True)
class RunConfig:
    site: SiteConfig
    devices: tuple[DeviceMix, ...]
    market: MarketConfig
    fman: FmanConfig
    grid: GridConfig
    start: datetime
    days: float
    slice_s: int
    seed: int
    weather_file: Path | None
    prices_file: Path | None
    report: bool
    dso: DsoStrategyConfig = DsoStrategyConfig()
    warmup_s: int = 0  # simulated before `start`: devices run uncontrolled, the ATP is idle
    tail_s: int = 0  # simulated after the window: offers made in the window run to their end
    deployment: str = "in_process"  # atp.deployment: the ATP in this process, or as services over HTTP

    @property
    def window_steps(self) -> int:
        """Steps of the reporting window (`days` from `start`)."""
        return round(self.days * SECONDS_PER_DAY / self.slice_s)

    @property
    def warmup_steps(self) -> int:
        return self.warmup_s // self.slice_s

    @property
    def tail_steps(self) -> int:
        return self.tail_s // self.slice_s

    @property
    def n_steps(self) -> int:
        """Every simulated step: warm-up, window and tail."""
        return self.warmup_steps + self.window_steps + self.tail_steps

    @property
    def run_start(self) -> datetime:
        """The first simulated instant: `start` minus the warm-up."""
        return self.start - timedelta(seconds=self.warmup_s)


# -- readers that name the key ----------------------------------------------------------------


def _get(cfg: Mapping[str, Any], key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise ConfigError(f"{key}: is missing from the configuration")
        node = node[part]
    return node


def _int(cfg: Mapping[str, Any], key: str, *, minimum: int | None = None) -> int:
    value = _get(cfg, key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{key}: must be a whole number, not {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{key}: must be at least {minimum}, not {value}")
    return value


def _float(cfg: Mapping[str, Any], key: str, *, minimum: float | None = None, maximum: float | None = None) -> float:
    value = _get(cfg, key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{key}: must be a number, not {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{key}: must be at least {minimum}, not {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{key}: must be at most {maximum}, not {value}")
    return float(value)


def _range(cfg: Mapping[str, Any], key: str, *, minimum: float = 0.0) -> tuple[float, float]:
    value = _get(cfg, key)
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ConfigError(f"{key}: must be a pair [low, high], not {value!r}")
    lo, hi = value
    for v in (lo, hi):
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ConfigError(f"{key}: must hold two numbers, not {value!r}")
    if lo > hi:
        raise ConfigError(f"{key}: low {lo} is above high {hi}")
    if lo < minimum:
        raise ConfigError(f"{key}: must not be below {minimum}, not {lo}")
    return float(lo), float(hi)


def _str(cfg: Mapping[str, Any], key: str) -> str:
    value = _get(cfg, key)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key}: must be a non-empty string, not {value!r}")
    return value


def _clock(value: Any, key: str) -> time:
    try:
        return time.fromisoformat(str(value))
    except ValueError:
        raise ConfigError(f"{key}: {value!r} is not a time of day like '12:00'") from None


def _optional_float(cfg: Mapping[str, Any], key: str, *, minimum: float, maximum: float | None = None) -> float | None:
    return None if _get(cfg, key) is None else _float(cfg, key, minimum=minimum, maximum=maximum)


def _contract(cfg: Mapping[str, Any]) -> Contract:
    """fman.contract: the prosumers' flexibility contract (absent: `DEFAULT_CONTRACT`)."""
    fman = cfg.get("fman") if isinstance(cfg, Mapping) else None
    if not isinstance(fman, Mapping) or fman.get("contract") is None:
        return DEFAULT_CONTRACT
    try:
        return contract_from_dict(fman["contract"])
    except ContractError as exc:
        message = str(exc).split(": ", 1)[-1]
        raise ConfigError(f"fman.contract.{exc.field}: {message}") from None


def _min_box_share(cfg: Mapping[str, Any]) -> float | None:
    """fman.aggregation.min_box_share (absent: 0.9; null: every member is boxed)."""
    key = "fman.aggregation.min_box_share"
    if not _has(cfg, key):
        return 0.9
    return _optional_float(cfg, key, minimum=0.0, maximum=1.0)


def _settlement_baseline(cfg: Mapping[str, Any], warmup_s: int) -> str:
    """fman.settlement_baseline: what the delegated prosumers' bills measure adaptation against."""
    key = "fman.settlement_baseline"
    if not _has(cfg, key):
        return "in_force"
    method = _str(cfg, key)
    if method not in SETTLEMENT_BASELINES:
        raise ConfigError(f"{key}: {method!r} is not one of {', '.join(SETTLEMENT_BASELINES)}")
    if method == "characteristic" and warmup_s < SECONDS_PER_DAY:
        raise ConfigError(
            f"{key}: characteristic needs at least one day of uncontrolled history before the window; "
            f"set sim.warmup_s to {SECONDS_PER_DAY} or more (now {warmup_s})"
        )
    return method


def _bidding(cfg: Mapping[str, Any]) -> BiddingConfig | None:
    """fman.bidding: absent or null = the FMAN does not bid into the market."""
    fman = cfg.get("fman") if isinstance(cfg, Mapping) else None
    if not isinstance(fman, Mapping) or fman.get("bidding") is None:
        return None
    if not isinstance(fman["bidding"], Mapping):
        raise ConfigError(f"fman.bidding: must be a mapping of bidding settings or null, not {fman['bidding']!r}")
    max_volume = _optional_float(cfg, "fman.bidding.max_volume_kwh", minimum=0.0)
    if max_volume is not None and max_volume <= 0:
        raise ConfigError(f"fman.bidding.max_volume_kwh: must be positive or null, not {max_volume}")
    return BiddingConfig(
        cost_eur_per_kwh=_float(cfg, "fman.bidding.cost_eur_per_kwh", minimum=0.0),
        margin_eur_per_kwh=_float(cfg, "fman.bidding.margin_eur_per_kwh", minimum=0.0),
        max_volume_kwh=max_volume,
        reference_eur_per_kwh=_optional_float(cfg, "fman.bidding.reference_eur_per_kwh", minimum=0.0),
        large_kw_threshold=_large_kw_threshold(cfg),
    )


def _large_kw_threshold(cfg: Mapping[str, Any]) -> float | None:
    """fman.bidding.large_kw_threshold (absent or null: every direct offer goes to the FMAR)."""
    key = "fman.bidding.large_kw_threshold"
    threshold = _optional_float(cfg, key, minimum=0.0) if _has(cfg, key) else None
    if threshold is not None and threshold <= 0:
        raise ConfigError(f"{key}: must be a positive peak power in kW (e.g. 10) or null, not {threshold:g}")
    return threshold


def _optional_path(cfg: Mapping[str, Any], key: str) -> Path | None:
    value = _get(cfg, key)
    if value is None:
        return None
    path = Path(str(value))
    if not path.is_file():
        raise ConfigError(f"{key}: file {path} does not exist")
    return path


def _count(cfg: Mapping[str, Any], key: str, available: int, who: str) -> int:
    value = _int(cfg, key, minimum=0)
    if value > available:
        raise ConfigError(f"{key}: {value} devices but the site has only {available} {who} prosumers")
    return value


def _device_mixes(cfg: Mapping[str, Any], delegated: int, direct: int) -> tuple[DeviceMix, ...]:
    """The `devices` group: one section per load type, checked by its device kind."""
    from sim.agents.kinds import KindError, get_kind, kind_names

    sections = _get(cfg, "devices")
    if not isinstance(sections, Mapping):
        raise ConfigError(f"devices: must map load types to sections, not {sections!r}")
    mixes = []
    for load_type in sections:
        prefix = f"devices.{load_type}"
        section = sections[load_type]
        if load_type not in kind_names():
            raise ConfigError(f"{prefix}: {load_type!r} is not a device kind (known: {', '.join(kind_names())})")
        if not isinstance(section, Mapping):
            raise ConfigError(f"{prefix}: must be a section with delegated, direct and parameters")
        kind = get_kind(load_type)
        unknown = sorted(set(section) - {"delegated", "direct", *kind.keys})
        if unknown:
            raise ConfigError(f"{prefix}.{unknown[0]}: is not a parameter of {load_type} ({', '.join(kind.keys)})")
        try:
            params = kind.check(section, prefix)
        except KindError as exc:
            raise ConfigError(str(exc)) from None
        mixes.append(
            DeviceMix(
                load_type=load_type,
                delegated=_count(cfg, f"{prefix}.delegated", delegated, "delegated"),
                direct=_count(cfg, f"{prefix}.direct", direct, "direct"),
                params=params,
            )
        )
    order = {name: i for i, name in enumerate(kind_names())}
    return tuple(sorted(mixes, key=lambda m: order[m.load_type]))


def _has(cfg: Mapping[str, Any], key: str) -> bool:
    try:
        _get(cfg, key)
    except ConfigError:
        return False
    return True


def _market_calendar(cfg: Mapping[str, Any], slice_s: int) -> dict[str, Any]:
    """`market.intraday.gates` (null = rolling sessions) and `market.intraday.lead_s`."""
    gates = _get(cfg, "market.intraday.gates") if _has(cfg, "market.intraday.gates") else None
    if gates is None:
        return {}
    if not isinstance(gates, list | tuple):
        raise ConfigError(f"market.intraday.gates: must be null or a list of local times, not {gates!r}")
    options: dict[str, Any] = {
        "intraday_gates": tuple(_clock(v, f"market.intraday.gates[{i}]") for i, v in enumerate(gates))
    }
    if _has(cfg, "market.intraday.lead_s"):
        lead_s = _int(cfg, "market.intraday.lead_s", minimum=0)
        if lead_s % slice_s:
            raise ConfigError(f"market.intraday.lead_s: (={lead_s}) must be a multiple of sim.slice_s")
        options["intraday_lead_s"] = lead_s
    return options


def _market_options(cfg: Mapping[str, Any], mechanism: str) -> dict[str, Any]:
    """The optional `market` keys of the clearing mechanisms: pricing, transport, time flexibility."""
    options: dict[str, Any] = {}
    if _has(cfg, "market.pricing"):
        pricing = _str(cfg, "market.pricing")
        rules = [p.value for p in Pricing]
        if mechanism == "one_sided_pool" and pricing != "pay_as_bid":
            raise ConfigError(f"market.pricing: the one-sided pool pays as bid, not {pricing!r}")
        if pricing not in rules:
            raise ConfigError(f"market.pricing: {pricing!r} is not a pricing rule ({', '.join(rules)})")
        options["pricing"] = pricing
    if _has(cfg, "market.max_starts"):
        options["max_starts"] = _int(cfg, "market.max_starts", minimum=1)
    if _has(cfg, "market.transport"):
        links = []
        raw = _get(cfg, "market.transport.links") if _has(cfg, "market.transport.links") else []
        if not isinstance(raw, list | tuple):
            raise ConfigError(f"market.transport.links: must be a list of links, not {raw!r}")
        for i, link in enumerate(raw):
            key = f"market.transport.links[{i}]"
            if not isinstance(link, Mapping):
                raise ConfigError(f"{key}: must have from_zone, to_zone, fee_eur_per_kwh, capacity_kwh")
            try:
                capacity = link.get("capacity_kwh")
                links.append(
                    TransportLink(
                        from_zone=_str(link, "from_zone"),
                        to_zone=_str(link, "to_zone"),
                        fee_eur_per_kwh=_float(link, "fee_eur_per_kwh", minimum=0.0),
                        capacity_kwh=math.inf if capacity is None else _float(link, "capacity_kwh", minimum=0.0),
                    )
                )
            except ConfigError as exc:
                raise ConfigError(f"{key}.{exc}") from None
        try:
            options["links"] = check_links(links)
        except InvalidRequestError as exc:
            raise ConfigError(f"market.transport.{exc.problems[0]}") from None
        hub_key, cap_key = "market.transport.hub_fee_eur_per_kwh", "market.transport.hub_capacity_kwh"
        if _has(cfg, hub_key):
            hub = _get(cfg, hub_key)
            options["hub_fee_eur_per_kwh"] = None if hub is None else _float(cfg, hub_key, minimum=0.0)
        if _has(cfg, cap_key) and _get(cfg, cap_key) is not None:
            options["hub_capacity_kwh"] = _float(cfg, cap_key, minimum=0.0)
        if _has(cfg, "market.transport.from_grid"):
            from_grid = _get(cfg, "market.transport.from_grid")
            if not isinstance(from_grid, bool):
                raise ConfigError(f"market.transport.from_grid: must be true or false, not {from_grid!r}")
            if from_grid and mechanism != "many_to_many":
                raise ConfigError("market.transport.from_grid: only the many_to_many mechanism trades transport")
            options["links_from_grid"] = from_grid
    return options


def load_run_config(cfg: Mapping[str, Any]) -> RunConfig:
    """Check the composed config (a plain dict or an OmegaConf container) and type it."""
    slice_s = _int(cfg, "sim.slice_s", minimum=1)
    if SECONDS_PER_DAY % slice_s:
        raise ConfigError(f"sim.slice_s: (={slice_s}) must divide 86400 (e.g. 900 or 3600)")
    if slice_s % 900:
        raise ConfigError(f"sim.slice_s: (={slice_s}) must be a multiple of 900 s (the load profiles' step)")
    days = _float(cfg, "sim.days")
    if days <= 0:
        raise ConfigError(f"sim.days: must be positive, not {days:g}")
    if (days * SECONDS_PER_DAY) % slice_s:
        raise ConfigError(f"sim.days: {days:g} days is not a whole number of {slice_s} s steps")
    start_text = str(_get(cfg, "sim.start"))
    try:
        start = datetime.fromisoformat(start_text)
    except ValueError:
        raise ConfigError(f"sim.start: {start_text!r} is not an ISO 8601 time") from None
    start = start.replace(tzinfo=UTC) if start.tzinfo is None else start.astimezone(UTC)
    if start.timestamp() % slice_s:
        raise ConfigError(f"sim.start: {start_text} is not on the {slice_s} s grid")
    seed = _int(cfg, "sim.seed", minimum=0)
    warmup_s = _int(cfg, "sim.warmup_s", minimum=0)
    tail_s = _int(cfg, "sim.tail_s", minimum=0)
    for key, value in (("sim.warmup_s", warmup_s), ("sim.tail_s", tail_s)):
        if value % slice_s:
            raise ConfigError(f"{key}: (={value}) must be a multiple of sim.slice_s (={slice_s})")

    tz_name = _str(cfg, "scenario.timezone")
    try:
        tz = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"scenario.timezone: {tz_name!r} is not a known time zone") from None
    climate = _str(cfg, "scenario.climate")
    if climate not in CLIMATES:
        raise ConfigError(f"scenario.climate: {climate!r} is not one of {sorted(CLIMATES)}")
    price_model = _str(cfg, "scenario.price_model")
    if price_model not in PRICE_MODELS:
        raise ConfigError(f"scenario.price_model: {price_model!r} is not one of {sorted(PRICE_MODELS)}")
    delegated = _int(cfg, "scenario.prosumers.delegated", minimum=0)
    direct = _int(cfg, "scenario.prosumers.direct", minimum=0)
    if delegated + direct == 0:
        raise ConfigError("scenario.prosumers: the site needs at least one prosumer")
    site = SiteConfig(
        name=_str(cfg, "scenario.name"),
        title=_str(cfg, "scenario.title"),
        timezone=tz,
        climate=climate,
        price_model=price_model,
        grid_code=_str(cfg, "scenario.grid_code"),
        delegated=delegated,
        direct=direct,
        household_kwh_per_year=_range(cfg, "scenario.load.household_kwh_per_year"),
        commercial_share=_float(cfg, "scenario.load.commercial_share", minimum=0.0, maximum=1.0),
        commercial_kwh_per_year=_range(cfg, "scenario.load.commercial_kwh_per_year"),
        pv_share=_float(cfg, "scenario.pv.share", minimum=0.0, maximum=1.0),
        pv_kwp=_range(cfg, "scenario.pv.kwp"),
        direct_price_eur_per_kwh=_range(cfg, "scenario.direct_price_eur_per_kwh"),
        brp=BrpConfig(
            imbalance_kwh_per_prosumer=_float(cfg, "scenario.brp.imbalance_kwh_per_prosumer", minimum=0.0),
            cutoff_eur_per_kwh=_float(cfg, "scenario.brp.cutoff_eur_per_kwh", minimum=0.0),
        ),
        dso=DsoConfig(
            transformer_kw=_float(cfg, "scenario.dso.transformer_kw", minimum=0.0),
            cutoff_eur_per_kwh=_float(cfg, "scenario.dso.cutoff_eur_per_kwh", minimum=0.0),
        ),
    )
    devices = _device_mixes(cfg, delegated, direct)
    mechanism = _str(cfg, "market.mechanism")
    if mechanism not in mechanism_names():
        raise ConfigError(f"market.mechanism: {mechanism!r} is not available ({', '.join(mechanism_names())})")
    forecast_times = _get(cfg, "market.dso.forecast_times")
    if not isinstance(forecast_times, list | tuple):
        raise ConfigError(f"market.dso.forecast_times: must be a list of times, not {forecast_times!r}")
    market = MarketConfig(
        mechanism=mechanism,
        day_ahead_gate_closure=_clock(_get(cfg, "market.day_ahead.gate_closure"), "market.day_ahead.gate_closure"),
        intraday_horizon_steps=_int(cfg, "market.intraday.horizon_steps", minimum=1),
        dso_forecast_times=tuple(_clock(v, f"market.dso.forecast_times[{i}]") for i, v in enumerate(forecast_times)),
        dso_horizon_steps=_int(cfg, "market.dso.horizon_steps", minimum=1),
        shortfall_penalty_eur_per_kwh=_float(cfg, "market.shortfall_penalty_eur_per_kwh", minimum=0.0)
        if _has(cfg, "market.shortfall_penalty_eur_per_kwh")
        else 0.0,
        **_market_options(cfg, mechanism),
        **_market_calendar(cfg, slice_s),
    )
    objective = _str(cfg, "fman.objective")
    if objective not in _FMAN_OBJECTIVES:
        raise ConfigError(f"fman.objective: {objective!r} is not available ({', '.join(_FMAN_OBJECTIVES)})")
    planning_interval_s = _int(cfg, "fman.planning_interval_s", minimum=1)
    if planning_interval_s % slice_s:
        raise ConfigError(f"fman.planning_interval_s: (={planning_interval_s}) must be a multiple of sim.slice_s")
    fman = FmanConfig(
        objective=objective,
        planning_interval_s=planning_interval_s,
        horizon_steps=_int(cfg, "fman.horizon_steps", minimum=1),
        start_tolerance_s=_int(cfg, "fman.aggregation.start_tolerance_s", minimum=0),
        max_group_size=_int(cfg, "fman.aggregation.max_group_size", minimum=1),
        time_limit_s=_float(cfg, "fman.time_limit_s", minimum=0.1),
        bidding=_bidding(cfg),
        contract=_contract(cfg),
        settlement_baseline=_settlement_baseline(cfg, warmup_s),
        min_box_share=_min_box_share(cfg),
    )
    grid = _grid(cfg)
    dso = _dso(cfg, slice_s)
    return RunConfig(
        site=site,
        devices=devices,
        market=market,
        fman=fman,
        grid=grid,
        start=start,
        days=days,
        slice_s=slice_s,
        seed=seed,
        weather_file=_optional_path(cfg, "data.weather_file"),
        prices_file=_optional_path(cfg, "data.prices_file"),
        report=bool(_get(cfg, "output.report")),
        dso=dso,
        warmup_s=warmup_s,
        tail_s=tail_s,
        deployment=_deployment(cfg, market=market, dso=dso),
    )


DEPLOYMENTS = ("in_process", "services")


def _deployment(cfg: Mapping[str, Any], *, market: MarketConfig, dso: DsoStrategyConfig) -> str:
    """`atp.deployment`: the ATP in this process, or the FMAN and FMAR as services on loopback
    (sim/deployment.py), which take everything through the exchange interface and their
    operator's rounds; what does not travel that way yet is refused here, by name."""
    atp = cfg.get("atp") if isinstance(cfg, Mapping) else None
    deployment = "in_process" if not isinstance(atp, Mapping) or atp.get("deployment") is None else atp["deployment"]
    if deployment not in DEPLOYMENTS:
        raise ConfigError(f"atp.deployment: {deployment!r} is not one of {', '.join(DEPLOYMENTS)}")
    if deployment == "services":
        refusals = {
            "dso.strategy=dynamic_tariff": dso.strategy == "dynamic_tariff",
            f"market.mechanism={market.mechanism}": bool(market.mechanism_options()),
        }
        for key, refused in refusals.items():
            if refused:
                raise ConfigError(
                    f"atp.deployment=services: {key} is not served yet (it needs a message the exchange "
                    "interface does not carry); run it with atp.deployment=in_process"
                )
    return str(deployment)


def _grid(cfg: Mapping[str, Any]) -> GridConfig:
    """The `grid` group: network, sizing to the site, and the congestion limits."""
    transformer = _get(cfg, "grid.transformer_kva")
    transformer_kva = None if transformer is None else _float(cfg, "grid.transformer_kva", minimum=1.0)
    scale = _get(cfg, "grid.line_rating_scale")
    line_rating_scale = None if scale == "auto" else _float(cfg, "grid.line_rating_scale", minimum=0.01)
    vm = _range(cfg, "grid.limits.vm_pu", minimum=0.5)
    if not vm[0] < 1.0 < vm[1]:
        raise ConfigError(f"grid.limits.vm_pu: the band {list(vm)} must contain 1.0 pu")
    return GridConfig(
        kind=_str(cfg, "grid.kind"),
        code=_str(cfg, "grid.code"),
        file=_optional_path(cfg, "grid.file"),
        transformer_kva=transformer_kva,
        line_rating_scale=line_rating_scale,
        max_loading_percent=_float(cfg, "grid.limits.max_loading_percent", minimum=1.0),
        vm_pu=vm,
    )


def _dso(cfg: Mapping[str, Any], slice_s: int) -> DsoStrategyConfig:
    """The `dso` group: the congestion strategy the DSO follows."""
    strategy = _str(cfg, "dso.strategy")
    if strategy not in DSO_STRATEGIES:
        raise ConfigError(f"dso.strategy: {strategy!r} is not one of {', '.join(DSO_STRATEGIES)}")
    types = _get(cfg, "dso.direct_control.load_types")
    if not isinstance(types, list | tuple) or not all(isinstance(t, str) for t in types):
        raise ConfigError(f"dso.direct_control.load_types: must be a list of load types, not {types!r}")
    from sim.agents.kinds import kind_names

    for t in types:
        if t not in kind_names():
            raise ConfigError(f"dso.direct_control.load_types: {t!r} is not a device kind ({', '.join(kind_names())})")
    interval = _get(cfg, "dso.forecast_interval_s")
    forecast_interval_s = None if interval is None else _int(cfg, "dso.forecast_interval_s", minimum=1)
    if forecast_interval_s is not None and forecast_interval_s % slice_s:
        raise ConfigError(f"dso.forecast_interval_s: (={forecast_interval_s}) must be a multiple of sim.slice_s")
    credit_s = _int(cfg, "dso.tariff_credit.before_s", minimum=0)
    if credit_s % slice_s:
        raise ConfigError(f"dso.tariff_credit.before_s: (={credit_s}) must be a multiple of sim.slice_s")
    oracle = _get(cfg, "dso.oracle")
    if not isinstance(oracle, bool):
        raise ConfigError(f"dso.oracle: must be true or false, not {oracle!r}")
    return DsoStrategyConfig(
        strategy=strategy,
        forecast_interval_s=forecast_interval_s,
        tariff_eur_per_kwh=_float(cfg, "dso.tariff_eur_per_kwh", minimum=0.0),
        direct_control_load_types=tuple(types),
        capacity_margin_percent=_float(cfg, "dso.capacity.margin_percent", minimum=0.0, maximum=99.0),
        capacity_sensitivity_steps=_int(cfg, "dso.capacity.sensitivity_steps", minimum=1),
        capacity_horizon_steps=_int(cfg, "dso.capacity.horizon_steps", minimum=1),
        capacity_new_overload_weight=_float(cfg, "dso.capacity.new_overload_weight", minimum=1.0),
        tariff_credit_eur_per_kwh=_float(cfg, "dso.tariff_credit.eur_per_kwh", minimum=0.0),
        tariff_credit_s=credit_s,
        oracle=oracle,
    )
