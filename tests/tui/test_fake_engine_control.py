"""The FakeEngine follows the Engine protocol's control calls as the Stepper does."""

from __future__ import annotations

import pytest

from lmscope.engine.errors import UserError
from lmscope.testing import FakeEngine, make_session


def test_fake_engine_rewinds_forces_and_names_the_first_token():
    engine = FakeEngine(make_session("llama", steps=6))
    engine.start()
    first = [engine.step() for _ in range(4)]
    engine.rewind(1)
    again = engine.step()
    assert again.step == 1 and again.token_id == first[1].token_id
    forced_id, text = engine.first_token(" Paris")
    forced = engine.step(force=forced_id)
    assert (forced.step, forced.token_id, forced.token, forced.chosen_by) == (2, forced_id, " Paris", "forced")
    assert engine.rewind_calls == 1 and engine.max_active == 1
    with pytest.raises(UserError):
        engine.rewind(9)
    with pytest.raises(UserError):
        engine.first_token("zzzz-not-a-token")
