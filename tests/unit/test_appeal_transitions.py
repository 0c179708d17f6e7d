"""The one table of appeal transitions (hotline.core.appeals)."""

from __future__ import annotations

import pytest

from hotline.core.appeals import (
    OPEN_STATUSES,
    TRANSITIONS,
    Actor,
    ActorKind,
    AppealStatus,
    AppealTransitionForbidden,
    allowed_targets,
    check_transition,
    open311_status,
    transition_for,
)
from hotline.core.errors import Conflict, InvalidInput

S = AppealStatus
K = ActorKind


def _reachable(start: AppealStatus) -> set[AppealStatus]:
    seen, todo = {start}, [start]
    while todo:
        current = todo.pop()
        for t in TRANSITIONS:
            if t.source is current and t.target not in seen:
                seen.add(t.target)
                todo.append(t.target)
    return seen


def test_the_table_has_one_entry_per_pair_and_uses_every_status() -> None:
    pairs = [(t.source, t.target) for t in TRANSITIONS]
    assert len(pairs) == len(set(pairs))
    used = {t.source for t in TRANSITIONS} | {t.target for t in TRANSITIONS}
    assert used == set(AppealStatus)
    assert all(t.actors for t in TRANSITIONS)


def test_closed_is_final_and_every_status_can_end_closed() -> None:
    assert [t for t in TRANSITIONS if t.source is S.CLOSED] == []
    for status in AppealStatus:
        assert S.CLOSED in _reachable(status), status


def test_the_life_in_the_brief_is_allowed() -> None:
    life = [
        (S.REGISTERED, S.ROUTED, K.SYSTEM), (S.ROUTED, S.ACCEPTED, K.EXECUTOR),
        (S.ACCEPTED, S.IN_PROGRESS, K.EXECUTOR),
        (S.IN_PROGRESS, S.NEEDS_CLARIFICATION, K.EXECUTOR),
        (S.NEEDS_CLARIFICATION, S.IN_PROGRESS, K.CITIZEN), (S.IN_PROGRESS, S.DONE, K.EXECUTOR),
        (S.DONE, S.REOPENED, K.CITIZEN), (S.REOPENED, S.DONE, K.EXECUTOR),
        (S.DONE, S.CLOSED, K.OPERATOR),
    ]
    for source, target, actor in life:
        assert check_transition(source, target, actor, "because").target is target


@pytest.mark.parametrize(("source", "target"), [
    (S.REGISTERED, S.DONE), (S.CLOSED, S.REOPENED), (S.DONE, S.IN_PROGRESS),
    (S.REGISTERED, S.ACCEPTED), (S.REJECTED, S.DONE), (S.CLOSED, S.CLOSED),
])
def test_a_missing_transition_is_a_conflict_naming_both_statuses(
    source: AppealStatus, target: AppealStatus
) -> None:
    assert transition_for(source, target) is None
    with pytest.raises(AppealTransitionForbidden) as caught:
        check_transition(source, target, K.ADMIN, "why")
    err = caught.value
    assert isinstance(err, Conflict) and err.http_status == 409
    assert err.error_id == "appeal_transition_forbidden"
    assert err.details["from"] == source.value and err.details["to"] == target.value
    assert source.value in err.message and target.value in err.message


def test_who_may_make_a_change_is_in_the_table() -> None:
    with pytest.raises(AppealTransitionForbidden, match="not allowed to a citizen"):
        check_transition(S.ROUTED, S.ACCEPTED, K.CITIZEN, None)
    with pytest.raises(AppealTransitionForbidden, match="not allowed to a executor"):
        check_transition(S.DONE, S.REOPENED, K.EXECUTOR, "not fixed")
    assert S.ACCEPTED in allowed_targets(S.ROUTED, K.EXECUTOR)
    assert S.ACCEPTED not in allowed_targets(S.ROUTED, K.OPERATOR)
    assert set(allowed_targets(S.DONE, K.CITIZEN)) == {S.REOPENED, S.CLOSED}


def test_a_reason_is_required_where_the_citizen_must_be_told_why() -> None:
    for target in (S.REJECTED, S.NEEDS_CLARIFICATION, S.DONE):
        with pytest.raises(InvalidInput, match="reason: required"):
            check_transition(S.IN_PROGRESS, target, K.EXECUTOR, "  ")
    with pytest.raises(InvalidInput, match="reason"):
        check_transition(S.DONE, S.REOPENED, K.CITIZEN, None)
    check_transition(S.ROUTED, S.ACCEPTED, K.EXECUTOR, None)  # no reason needed


def test_open311_sees_open_and_closed() -> None:
    assert {open311_status(s) for s in OPEN_STATUSES} == {"open"}
    assert {open311_status(s) for s in set(AppealStatus) - OPEN_STATUSES} == {"closed"}


def test_an_executor_actor_carries_their_organisation() -> None:
    with pytest.raises(InvalidInput, match=r"actor\.executor_id"):
        Actor(K.EXECUTOR, "petrenko")
    with pytest.raises(InvalidInput, match=r"actor\.citizen_id"):
        Actor(K.CITIZEN, "someone")
    assert Actor(K.EXECUTOR, "petrenko", executor_id=3).label == "executor:petrenko"
