"""Errors survive being copied: pickled to another process, or re-raised by SimPy.

Both copy an exception as `type(e)(*e.args)`. An ATP error whose constructor takes more than its
sentence keeps the constructor's arguments in `args`, so the copy is the same error, saying the
same sentence, with its fields (`problems`, `known`, ...).
"""

from __future__ import annotations

import pickle

import pytest
import simpy

from atp.errors import InvalidOfferError, Problem
from atp.fman.contracts import ContractError
from atp.fmar.errors import InvalidRequestError, InvalidSessionError
from atp.foa.config import ConfigError
from atp.foa.errors import ScheduleRefusedError, UnknownDeviceError, UnknownLoadTypeError

PROBLEMS = [Problem("delivery_end", "must be after delivery_start", "period"), Problem("slice_s", "must be > 0")]

ERRORS = [
    InvalidOfferError(PROBLEMS),
    InvalidOfferError(PROBLEMS, what="measurement"),
    InvalidSessionError(PROBLEMS),
    InvalidRequestError(PROBLEMS),
    UnknownLoadTypeError("toaster", ["ev", "heat_pump"]),
    UnknownDeviceError("ev-2", ["ev-1"]),
    ScheduleRefusedError("fo-1", PROBLEMS),
    ConfigError("foa.yaml", PROBLEMS),
    ContractError("rate_eur_per_kwh", "must be a number, got str"),
]


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
def test_a_copy_says_the_same_sentence(error):
    for copy in (type(error)(*error.args), pickle.loads(pickle.dumps(error))):
        assert type(copy) is type(error)
        assert str(copy) == str(error)
        assert getattr(copy, "problems", None) == getattr(error, "problems", None)
    assert "must be" in str(error) or "known" in str(error) or "its devices" in str(error)


def test_simpy_re_raises_a_process_failure_with_its_sentence():
    env = simpy.Environment()

    def process(env: simpy.Environment):
        yield env.timeout(1)
        raise InvalidSessionError(PROBLEMS)

    env.process(process(env))
    with pytest.raises(InvalidSessionError) as raised:
        env.run()
    assert str(raised.value) == "invalid session: delivery_end: must be after delivery_start; slice_s: must be > 0"
    assert raised.value.problems == PROBLEMS
