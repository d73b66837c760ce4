"""FMAN contracts, KIBERnet baselines and per-period settlement (bills and statement)."""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atp.flexoffer import DefaultSchedule, FlexOffer, Mode, Price, Profile, Schedule, Slice
from atp.fman.baselines import (
    BASELINE_METHODS,
    BaselineError,
    adaptation_kwh,
    characteristic_baseline,
    validate_against_submeter,
)
from atp.fman.contracts import ContractError, DelegatedContract, DirectContract, contract_from_dict
from atp.fman.errors import FmanError
from atp.fman.settlement import ProsumerPeriod, SettlementError, settle

T0 = datetime(2026, 3, 2, tzinfo=UTC)
SLICE_S = 900
PERIOD_STEPS = 16

_kwh = st.floats(-5.0, 5.0, allow_nan=False).map(lambda v: round(v, 3))
_rate = st.floats(0.0, 2.0, allow_nan=False).map(lambda v: round(v, 4))


# -- helpers ---------------------------------------------------------------------------------
def _offer(
    oid: str, lo: float, hi: float, default: tuple[float, ...], *, start_step: int = 0, flex_steps: int = 4
) -> FlexOffer:
    start = T0 + timedelta(seconds=SLICE_S * start_step)
    return FlexOffer(
        id=oid,
        issuer=f"p-{oid}",
        mode=Mode.DELEGATED,
        profiles=(Profile(slices=(Slice(len(default), (lo, hi)),)),),
        start_after=start,
        start_before=start + timedelta(seconds=SLICE_S * flex_steps),
        slice_s=SLICE_S,
        default_schedule=DefaultSchedule(start=start, profile=0, energy=default),
        price=Price(per_kwh_deviation=0.2),
    )


def _schedule(offer: FlexOffer, energy: tuple[float, ...], start_step: int) -> Schedule:
    return Schedule(
        flex_offer_id=offer.id or "", start=T0 + timedelta(seconds=SLICE_S * start_step), profile=0, energy=energy
    )


@st.composite
def _contracts(draw: st.DrawFn) -> DelegatedContract | DirectContract:
    if draw(st.booleans()):
        return DelegatedContract(
            reward_eur_per_h_kw_time_flexibility=draw(_rate),
            reward_eur_per_kwh_energy_flexibility=draw(_rate),
            reward_eur_per_flexible_kwh=draw(_rate),
            activation_eur_per_kwh=draw(_rate),
            imbalance_tolerance_share=draw(st.floats(0.0, 1.0)),
            penalty_eur_per_kwh=draw(_rate),
        )
    return DirectContract(
        price_eur_per_kwh_deviation=draw(st.none() | _rate),
        imbalance_tolerance_share=draw(st.floats(0.0, 1.0)),
        penalty_eur_per_kwh=draw(_rate),
    )


@st.composite
def _periods(draw: st.DrawFn, index: int) -> ProsumerPeriod:
    n = draw(st.integers(1, 8))
    a, b = draw(_kwh), draw(_kwh)
    lo, hi = min(a, b), max(a, b)
    inside = st.floats(lo, hi, allow_nan=False)
    default = tuple(draw(inside) for _ in range(n))
    start_step = draw(st.integers(0, PERIOD_STEPS - 1))
    offer = _offer(f"fo-{index}", lo, hi, default, start_step=start_step)
    schedule = None
    if draw(st.booleans()):
        schedule = _schedule(offer, tuple(draw(inside) for _ in range(n)), start_step + draw(st.integers(0, 4)))
    metered = np.array([draw(_kwh) for _ in range(PERIOD_STEPS)])
    return ProsumerPeriod(offer=offer, contract=draw(_contracts()), metered_kwh=metered, schedule=schedule)


@st.composite
def _settlement_inputs(draw: st.DrawFn) -> tuple[list[ProsumerPeriod], float]:
    n = draw(st.integers(0, 6))
    items = [draw(_periods(i)) for i in range(n)]
    revenue = draw(st.floats(-1e4, 1e4, allow_nan=False))
    return items, revenue


def _settle(items: list[ProsumerPeriod], revenue: float = 0.0):
    return settle(items, period_start=T0, period_steps=PERIOD_STEPS, slice_s=SLICE_S, market_revenue_eur=revenue)


def _grid(values: dict[int, float]) -> np.ndarray:
    out = np.zeros(PERIOD_STEPS)
    for k, v in values.items():
        out[k] = v
    return out


# -- settlement properties -------------------------------------------------------------------
@settings(max_examples=150, deadline=None)
@given(_settlement_inputs())
def test_money_balances_to_the_cent_and_pays_only_delivered_adaptation(
    inputs: tuple[list[ProsumerPeriod], float],
) -> None:
    items, revenue = inputs
    result = _settle(items, revenue)
    s = result.statement
    assert isinstance(s.market_revenue_cents, int)
    assert s.market_revenue_cents == round(revenue * 100)
    assert s.market_revenue_cents == s.payments_to_prosumers_cents + s.margin_cents
    assert s.payments_to_prosumers_cents == sum(b.total_cents for b in result.bills)
    assert s.n_bills == len(items)
    for bill in result.bills:
        lines = (
            bill.time_flexibility_reward_cents
            + bill.energy_flexibility_reward_cents
            + bill.flexible_kwh_reward_cents
            + bill.activation_cents
            - bill.penalty_cents
        )
        assert bill.total_cents == lines
        assert all(isinstance(getattr(bill, f.name), int) for f in dataclasses.fields(bill) if f.name.endswith("cents"))
        # Adaptation is paid only where it was both scheduled and metered.
        assert bill.delivered_adaptation_kwh <= bill.scheduled_adaptation_kwh + 1e-9
        assert bill.delivered_adaptation_kwh <= bill.factual_adaptation_kwh + 1e-9
        assert bill.activation_cents >= 0
        assert bill.penalty_cents >= 0
        assert bill.penalised_kwh <= bill.imbalance_kwh + 1e-9


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0.1, 3.0), min_size=2, max_size=6), _rate, st.booleans())
def test_no_reward_for_adaptation_not_delivered(default: list[float], rate: float, opposite: bool) -> None:
    """The prosumer ran its baseline, or moved against the schedule: no activation payment."""
    offer = _offer("fo-1", -5.0, 5.0, tuple(default))
    shifted = tuple(v + 1.0 for v in default)  # the schedule asks for more consumption
    metered = _grid(dict(enumerate(v - 1.0 if opposite else v for v in default)))
    contract = DelegatedContract(activation_eur_per_kwh=rate + 0.01)
    bill = _settle([ProsumerPeriod(offer, contract, metered, _schedule(offer, shifted, 0))]).bills[0]
    assert bill.scheduled_adaptation_kwh == pytest.approx(len(default))
    assert bill.delivered_adaptation_kwh == 0.0
    assert bill.activation_cents == 0
    assert bill.predicted_total_cents == round((rate + 0.01) * bill.scheduled_adaptation_kwh * 100)


def test_delivered_adaptation_is_paid_up_to_what_was_scheduled() -> None:
    offer = _offer("fo-1", 0.0, 4.0, (1.0, 1.0))
    schedule = _schedule(offer, (3.0, 1.5), 0)  # asked: +2, +0.5
    metered = _grid({0: 2.0, 1: 3.0})  # did: +1, +2 (overshoot on step 1 is not paid)
    contract = DelegatedContract(activation_eur_per_kwh=0.5)
    bill = _settle([ProsumerPeriod(offer, contract, metered, schedule)]).bills[0]
    assert bill.delivered_adaptation_kwh == pytest.approx(1.5)
    assert bill.activation_cents == 75


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.floats(0.5, 3.0), min_size=1, max_size=6),
    st.floats(0.01, 0.5),
    st.floats(0.0, 0.9),
    st.floats(0.1, 2.0),
)
def test_penalty_only_beyond_imbalance_tolerance(
    energy: list[float], share: float, deviation_share: float, penalty: float
) -> None:
    offer = _offer("fo-1", 0.0, 5.0, tuple(energy))
    schedule = _schedule(offer, tuple(energy), 0)
    scheduled_kwh = sum(energy)
    metered = _grid({k: v * (1 + deviation_share) for k, v in enumerate(energy)})
    contract = DelegatedContract(imbalance_tolerance_share=share, penalty_eur_per_kwh=penalty)
    bill = _settle([ProsumerPeriod(offer, contract, metered, schedule)]).bills[0]
    imbalance = deviation_share * scheduled_kwh
    assert bill.imbalance_kwh == pytest.approx(imbalance)
    assert bill.tolerance_kwh == pytest.approx(share * scheduled_kwh)
    if imbalance <= share * scheduled_kwh - 1e-9:
        assert bill.penalty_cents == 0
        assert bill.penalised_kwh == 0.0
    else:
        assert bill.penalised_kwh == pytest.approx(imbalance - share * scheduled_kwh, abs=1e-9)
        assert bill.penalty_cents == round(penalty * bill.penalised_kwh * 100)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_an_inflated_default_is_never_paid_more_than_an_honest_one(data: st.DataObject) -> None:
    """Declaring a default above what the device would do (inflation >= 0 per step) cannot raise
    the bill, to the cent, whatever the contract, schedule, meter and covered steps."""
    n = data.draw(st.integers(1, 8))
    values = st.lists(_kwh, min_size=n, max_size=n)
    honest = np.array(data.draw(values))
    inflation = np.array(data.draw(st.lists(st.floats(0.0, 5.0, allow_nan=False), min_size=n, max_size=n)))
    start_step = data.draw(st.integers(0, PERIOD_STEPS - n))
    metered = np.zeros(PERIOD_STEPS)
    metered[start_step : start_step + n] = data.draw(values)
    scheduled = tuple(data.draw(values))
    contract = data.draw(_contracts())
    covered = np.array(data.draw(st.lists(st.booleans(), min_size=PERIOD_STEPS, max_size=PERIOD_STEPS)))
    declared_in_offer = data.draw(st.booleans())  # the default schedule itself, or a per-step baseline

    def bill(default: np.ndarray):
        offer = _offer("fo-1", -20.0, 20.0, tuple(float(v) for v in default), start_step=start_step)
        baseline = None
        if not declared_in_offer:
            baseline = np.zeros(PERIOD_STEPS)
            baseline[start_step : start_step + n] = default
        schedule = _schedule(offer, scheduled, start_step)
        item = ProsumerPeriod(offer, contract, metered, schedule, baseline_kwh=baseline, covered=covered)
        return _settle([item]).bills[0]

    fair, inflated = bill(honest), bill(honest + inflation)
    assert inflated.total_cents <= fair.total_cents
    assert inflated.delivered_adaptation_kwh <= fair.delivered_adaptation_kwh
    assert inflated.penalty_cents == fair.penalty_cents  # the penalty never depends on the baseline


def test_an_energy_neutral_shift_is_paid_once() -> None:
    """1 kWh moved from step 0 to step 2 and delivered: 1 kWh of adaptation, not 2."""
    offer = _offer("fo-1", 0.0, 4.0, (1.0, 1.0, 1.0))
    schedule = _schedule(offer, (0.0, 1.0, 2.0), 0)
    contract = DelegatedContract(activation_eur_per_kwh=0.5)
    bill = _settle([ProsumerPeriod(offer, contract, _grid({0: 0.0, 1: 1.0, 2: 2.0}), schedule)]).bills[0]
    assert bill.scheduled_adaptation_kwh == pytest.approx(1.0)
    assert bill.factual_adaptation_kwh == pytest.approx(1.0)
    assert bill.delivered_adaptation_kwh == pytest.approx(1.0)
    assert bill.activation_cents == 50


def test_production_curtailed_is_paid_and_a_pure_reduction_is_not() -> None:
    """PV declared at -2 kWh, curtailed to -0.5: 1.5 kWh moved up, paid. A load cut from 2 to
    0.5 kWh with nothing moved elsewhere is what an inflated default would fake: not paid."""
    contract = DelegatedContract(activation_eur_per_kwh=1.0)
    pv = _offer("fo-pv", -2.0, 0.0, (-2.0,))
    curtailed = _settle([ProsumerPeriod(pv, contract, _grid({0: -0.5}), _schedule(pv, (-0.5,), 0))]).bills[0]
    assert curtailed.delivered_adaptation_kwh == pytest.approx(1.5) and curtailed.activation_cents == 150
    load = _offer("fo-load", 0.0, 2.0, (2.0,))
    cut = _settle([ProsumerPeriod(load, contract, _grid({0: 0.5}), _schedule(load, (0.5,), 0))]).bills[0]
    assert cut.delivered_adaptation_kwh == 0.0 and cut.total_cents == 0


def test_a_bill_covers_only_the_steps_its_offer_was_in_force() -> None:
    """An offer re-declared after two steps is billed for those two steps, not its whole default;
    per-step baseline and schedule from the caller replace the offer's own."""
    offer = _offer("fo-1", 0.0, 4.0, (1.0, 1.0, 1.0, 1.0))
    covered = np.zeros(PERIOD_STEPS, dtype=bool)
    covered[:2] = True
    metered = _grid({0: 2.0, 1: 1.0, 2: 3.0, 3: 3.0})  # steps 2, 3 ran under the next offer
    scheduled = _grid({0: 2.0, 1: 1.0, 2: 3.0, 3: 3.0})
    contract = DelegatedContract(activation_eur_per_kwh=1.0, reward_eur_per_flexible_kwh=0.1)
    item = ProsumerPeriod(
        offer, contract, metered, baseline_kwh=_grid({0: 1.0, 1: 1.0}), scheduled_kwh=scheduled, covered=covered
    )
    bill = _settle([item]).bills[0]
    assert bill.covered_steps == 2
    assert bill.baseline_kwh == pytest.approx(2.0) and bill.metered_kwh == pytest.approx(3.0)
    assert bill.delivered_adaptation_kwh == pytest.approx(1.0)  # step 0 only
    assert bill.offered_flexible_kwh == pytest.approx(3.0)  # what ran under the offer
    assert bill.total_cents == 100 + 30
    with pytest.raises(SettlementError, match="covered"):
        _settle([dataclasses.replace(item, covered=np.ones(3, dtype=bool))])


def test_delegated_rewards_for_offered_flexibility() -> None:
    offer = _offer("fo-1", 0.0, 2.0, (1.0, 1.0, 1.0, 1.0), flex_steps=8)  # 2 h time flexibility, 8 kW
    contract = DelegatedContract(
        reward_eur_per_h_kw_time_flexibility=0.01,
        reward_eur_per_kwh_energy_flexibility=0.1,
        reward_eur_per_flexible_kwh=0.05,
    )
    bill = _settle([ProsumerPeriod(offer, contract, _grid({0: 1, 1: 1, 2: 1, 3: 1}))], revenue=10.0).bills[0]
    assert bill.offered_time_flexibility_h == 2.0
    assert bill.offered_power_kw == 8.0
    assert bill.offered_energy_flexibility_kwh == 8.0
    assert bill.offered_flexible_kwh == 4.0
    assert (bill.time_flexibility_reward_cents, bill.energy_flexibility_reward_cents) == (16, 80)
    assert bill.flexible_kwh_reward_cents == 20
    assert bill.total_cents == 116
    assert bill.as_dict()["total_eur"] == pytest.approx(1.16)


def test_direct_contract_pays_the_offer_price_and_needs_one() -> None:
    offer = _offer("fo-1", 0.0, 4.0, (1.0, 1.0))
    schedule = _schedule(offer, (3.0, 3.0), 0)
    metered = _grid({0: 3.0, 1: 3.0})
    bill = _settle([ProsumerPeriod(offer, DirectContract(), metered, schedule)]).bills[0]
    assert bill.activation_cents == 80  # 4 kWh x 0.2 EUR/kWh
    no_price = dataclasses.replace(offer, price=None)
    with pytest.raises(SettlementError, match="deviation price"):
        _settle([ProsumerPeriod(no_price, DirectContract(), metered, schedule)])


def test_settlement_refuses_double_counting_and_misaligned_data() -> None:
    offer = _offer("fo-1", 0.0, 4.0, (1.0, 1.0))
    item = ProsumerPeriod(offer, DelegatedContract(), np.zeros(PERIOD_STEPS))
    with pytest.raises(SettlementError, match="twice"):
        _settle([item, item])
    with pytest.raises(SettlementError, match="metered_kwh"):
        _settle([dataclasses.replace(item, metered_kwh=np.zeros(3))])
    off_grid = _schedule(offer, (1.0, 1.0), 0)
    off_grid = dataclasses.replace(off_grid, start=T0 + timedelta(seconds=60))
    with pytest.raises(SettlementError, match="grid"):
        _settle([dataclasses.replace(item, schedule=off_grid)])
    assert issubclass(SettlementError, FmanError)


def test_characteristic_baseline_overrides_the_default() -> None:
    offer = _offer("fo-1", 0.0, 4.0, (1.0, 1.0))
    history = np.full((5, PERIOD_STEPS), 0.5)
    baseline = characteristic_baseline(history, n_days=5)
    item = ProsumerPeriod(offer, DelegatedContract(activation_eur_per_kwh=1.0), _grid({0: 1.0, 1: 1.0}))
    bill = _settle([dataclasses.replace(item, baseline_kwh=baseline)]).bills[0]
    assert bill.baseline_kwh == pytest.approx(0.5 * PERIOD_STEPS)


# -- contracts -------------------------------------------------------------------------------
_DELEGATED_FIELDS = [f.name for f in dataclasses.fields(DelegatedContract)]


@pytest.mark.parametrize("field", _DELEGATED_FIELDS)
@pytest.mark.parametrize("bad", [-0.1, math.nan, math.inf, "1", True])
def test_contract_validation_names_the_field(field: str, bad: object) -> None:
    with pytest.raises(ContractError, match=field) as err:
        DelegatedContract(**{field: bad})
    assert err.value.field == field


def test_contract_tolerance_is_a_share_and_direct_is_validated() -> None:
    with pytest.raises(ContractError, match="imbalance_tolerance_share"):
        DelegatedContract(imbalance_tolerance_share=1.5)
    with pytest.raises(ContractError, match="price_eur_per_kwh_deviation"):
        DirectContract(price_eur_per_kwh_deviation=-1.0)
    with pytest.raises(ContractError, match="penalty_eur_per_kwh"):
        DirectContract(penalty_eur_per_kwh=math.nan)


def test_contract_from_dict() -> None:
    c = contract_from_dict({"kind": "delegated", "activation_eur_per_kwh": 0.1, "imbalance_tolerance_share": 0.1})
    assert c == DelegatedContract(activation_eur_per_kwh=0.1, imbalance_tolerance_share=0.1)
    assert contract_from_dict({"kind": "direct"}) == DirectContract()
    with pytest.raises(ContractError, match="'kind'"):
        contract_from_dict({"kind": "barter"})
    with pytest.raises(ContractError, match="activation_eur_per_kw'") as err:
        contract_from_dict({"kind": "delegated", "activation_eur_per_kw": 0.1})
    assert err.value.field == "activation_eur_per_kw"
    with pytest.raises(ContractError, match="penalty_eur_per_kwh"):
        contract_from_dict({"kind": "direct", "penalty_eur_per_kwh": "a lot"})


# -- baselines -------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(
    st.floats(-10.0, 10.0, allow_nan=False),
    st.integers(1, 15),
    st.integers(1, 96),
    st.sampled_from(BASELINE_METHODS),
    st.integers(1, 20),
)
def test_baseline_of_constant_history_is_that_constant(
    value: float, days: int, steps: int, method: str, n_days: int
) -> None:
    history = np.full((days, steps), value)
    baseline = characteristic_baseline(history, method=method, n_days=n_days)
    assert baseline.shape == (steps,)
    np.testing.assert_allclose(baseline, value, rtol=1e-12, atol=1e-12)


def test_baseline_methods_and_day_of_adjustment() -> None:
    history = np.array([[1.0, 1.0], [100.0, 100.0], [2.0, 4.0], [4.0, 8.0], [3.0, 3.0]])
    np.testing.assert_allclose(characteristic_baseline(history, n_days=3), [3.0, 5.0])
    np.testing.assert_allclose(characteristic_baseline(history, method="median_of_similar_days", n_days=3), [3.0, 4.0])
    np.testing.assert_allclose(characteristic_baseline(history, method="high_x_of_y", n_days=3, high_days=1), [4, 8])
    # Day-of factor 4.5/3 = 1.5 is capped to 1.2.
    adjusted = characteristic_baseline(history, n_days=3, day_of_kwh=np.array([4.5, 0.0]), adjustment_steps=slice(0, 1))
    np.testing.assert_allclose(adjusted, [3.6, 6.0])
    with pytest.raises(BaselineError, match="method"):
        characteristic_baseline(history, method="guess")
    with pytest.raises(BaselineError, match="shape"):
        characteristic_baseline(np.ones(4))
    with pytest.raises(BaselineError, match="both"):
        characteristic_baseline(history, day_of_kwh=np.ones(2))
    np.testing.assert_allclose(adaptation_kwh(np.array([1.0, 2.0]), np.array([1.5, 1.0])), [0.5, -1.0])


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.floats(0.1, 10.0), min_size=1, max_size=48),
    st.floats(0.01, 0.5),
    st.floats(0.0, 0.99),
    st.data(),
)
def test_submeter_validation_passes_within_and_fails_beyond_tolerance(
    sub: list[float], share: float, within: float, data: st.DataObject
) -> None:
    sub_kwh = np.array(sub)
    signs = np.array(data.draw(st.lists(st.sampled_from([-1.0, 1.0]), min_size=len(sub), max_size=len(sub))))
    ok = validate_against_submeter(sub_kwh * (1 + signs * share * within), sub_kwh, tolerance_share=share)
    assert ok.passed
    assert ok.step_ok.all()
    assert abs(ok.worst_deviation_kwh) <= share * sub_kwh.max() + 1e-6
    k = data.draw(st.integers(0, len(sub) - 1))
    main = sub_kwh.copy()
    main[k] = sub_kwh[k] * (1 + 1.5 * share) + 0.01
    bad = validate_against_submeter(main, sub_kwh, tolerance_share=share)
    assert not bad.passed
    assert not bad.step_ok[k]
    assert bad.worst_step == k
    assert bad.worst_deviation_kwh == pytest.approx(main[k] - sub_kwh[k])


def test_submeter_validation_rejects_bad_input() -> None:
    with pytest.raises(BaselineError, match="tolerance_share"):
        validate_against_submeter(np.ones(2), np.ones(2), tolerance_share=2.0)
    with pytest.raises(BaselineError, match="one length"):
        validate_against_submeter(np.ones(2), np.ones(3), tolerance_share=0.1)
