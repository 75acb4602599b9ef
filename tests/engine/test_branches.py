"""BranchTree: forks keep history, replay instructions rebuild a branch exactly."""

from dataclasses import replace

import pytest

from lmscope.engine.branches import BranchTree
from lmscope.testing import make_session


def _records(n=6, seed=0):
    return make_session("llama", steps=n, seed=seed).steps


def test_fork_keeps_the_abandoned_continuation():
    tree, steps = BranchTree(), _records()
    for record in steps:
        tree.append(record)
    abandoned = tree.fork(3, forced_id=999)
    assert tree.live == 0 and tree.live_branch.steps == steps[:3]
    assert abandoned.parent == 0 and abandoned.fork_step == 3 and abandoned.steps == steps
    assert abandoned.forced is None and abandoned.finish_reason == steps[-1].finish_reason
    assert tree.live_branch.finish_reason is None


def test_fork_records_a_forced_first_step():
    tree, steps = BranchTree(), _records()
    forced = replace(steps[2], chosen_by="forced", token_id=5)
    for record in (*steps[:2], forced, *steps[3:]):
        tree.append(record)
    assert tree.fork(2, None).forced == 5


def test_steps_to_replay_from_the_shared_prefix():
    tree, steps, other = BranchTree(), _records(), _records(seed=1)
    for record in steps:
        tree.append(record)
    old = tree.fork(2, forced_id=other[2].token_id)
    for record in other[2:5]:
        tree.append(replace(record, step=record.step))

    def tokens_to_replay(branch_id: int) -> tuple[int, list[int]]:
        common, records = tree.steps_to_replay(branch_id)
        return common, [record.token_id for record in records]

    assert tokens_to_replay(old.id) == (2, [r.token_id for r in steps[2:]])
    assert all(a is b for a, b in zip(tree.steps_to_replay(old.id)[1], steps[2:], strict=True))
    tree.switch(old.id)
    assert tokens_to_replay(0) == (2, [r.token_id for r in other[2:5]])
    assert tokens_to_replay(old.id) == (len(steps), [])


def test_bad_calls():
    tree = BranchTree()
    tree.append(_records()[0])
    with pytest.raises(ValueError):
        tree.fork(2, None)
    with pytest.raises(ValueError):
        tree.append(_records()[3])
    with pytest.raises(KeyError):
        tree.switch(9)
