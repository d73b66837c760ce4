"""Test settings: Hypothesis without deadlines (shared CI machines); a CI profile that reproduces;
the longest test files first; the MQTT gateway fixture.

Profiles (`--hypothesis-profile NAME` picks one locally; `CI` set in the environment loads "ci"):
- "default": 100 examples; the local example database in `.hypothesis/` replays past failures.
- "ci": the same examples, no example database (a run depends on its seed only) and every
  failure prints its reproduction blob. The session draws one seed, prints it in the header
  and again under any failure: `pytest --hypothesis-profile=ci --hypothesis-seed=N` repeats the run.
"""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("default", deadline=None, max_examples=100, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "ci",
    deadline=None,
    max_examples=100,
    derandomize=False,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("ci" if os.environ.get("CI") else "default")


# The files whose module fixtures run whole worlds, longest first (`pytest --durations=45` on a
# quiet machine): each worker (pytest-xdist, one file per worker) takes the next file when it is
# free, so starting with the longest leaves no long file running alone at the end.
_LONGEST_FIRST = (
    "test_dso_strategies",
    "test_world",
    "test_grid",
    "test_run_folder_checker",
    "test_dso_oracle",
    "test_energy_targets",
    "test_energy_targets_esr",
    "test_world_services_bidding",
    "test_aggregates_output",
    "test_world_services",
    "test_foa_baselines",
    "test_ledger",
    "test_delivery_settlement",
    "test_openapi",
    "test_interface_crash",
    "test_box_emulator",
    "test_fmar_world",
    "test_fmar_bid_selection",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the longest files first (`_LONGEST_FIRST`); the order within a file is kept."""
    rank = {name: i for i, name in enumerate(_LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))


def _ci_profile(config: pytest.Config) -> bool:
    chosen = config.getoption("hypothesis_profile", None) or settings.get_current_profile_name()
    return chosen == "ci"


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Under the CI profile, fix the session's seed before Hypothesis' plugin reads the option."""
    if _ci_profile(config) and config.getoption("hypothesis_seed", None) is None:
        config.option.hypothesis_seed = str(random.SystemRandom().randrange(2**32))


def _seed_line(config: pytest.Config) -> str | None:
    seed = config.getoption("hypothesis_seed", None)
    if seed is None:
        return None
    return f"hypothesis seed {seed} (repeat with --hypothesis-profile=ci --hypothesis-seed={seed})"


def pytest_report_header(config: pytest.Config) -> str | None:
    return _seed_line(config)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    line = _seed_line(config)
    if line is not None and terminalreporter.stats.get("failed"):
        terminalreporter.write_line(line)


@pytest.fixture()
def gateway():
    """A fresh receiver store behind the MQTT binding's gateway on the machine's Mosquitto
    (127.0.0.1:1883), under a receiver name of its own: (receiver name, store)."""
    import secrets

    from atp.interface import OfferStore, create_app
    from atp.interface.auth import TokenTable
    from atp.interface.mqtt import MqttGateway, MqttSettings
    from tests.http_support import OPERATOR_TOKEN, TOKENS, Clock

    store = OfferStore("fman", clock=Clock())
    app = create_app(store, tokens=TOKENS, operator_tokens=[OPERATOR_TOKEN])
    receiver = f"fman-{secrets.token_hex(4)}"
    table = TokenTable.of(TOKENS, [OPERATOR_TOKEN])
    with MqttGateway(app, store, receiver=receiver, tokens=table, settings=MqttSettings()):
        yield receiver, store
