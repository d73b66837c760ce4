"""The energy targets of tests/test_energy_targets.py on ESR (the longest site), in a file of its
own so that it runs beside the other sites on another worker."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.test_energy_targets import check_energy_targets


@settings(max_examples=2, derandomize=False)
@given(seed=st.integers(0, 2**16))
def test_flexible_devices_draw_what_their_twins_draw_on_esr(seed):
    check_energy_targets("esr", seed)
