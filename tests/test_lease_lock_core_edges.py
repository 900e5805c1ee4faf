"""Edges of the lease lock's cores that the mutation run found untested (docs/verification.md,
"Mutation testing"): a lease's last instant, timers that fire in the wrong state, what a
retried acquire carries, the local operations the server and the resource refuse, and
what the resource node sends and persists."""

from __future__ import annotations

import random

import pytest

from trio_foundation import StaleTokenError
from trio_foundation.protocols.effects import (
    CancelTimer,
    ClientRequest,
    Persist,
    Reply,
    Send,
    SetTimer,
)
from trio_foundation.protocols.lease_lock import (
    AcquireRequest,
    Denied,
    FencedResource,
    Granted,
    LeaseInfo,
    LockClient,
    LockServer,
    ReleaseRequest,
    Renewed,
    RenewRequest,
    WriteAccepted,
    WriteRefused,
    WriteRequest,
)

RNG = random.Random(0)


def acquiring_client(now: float = 0.0, ttl: float = 9.0) -> LockClient:
    client = LockClient(1, server=0, retry_interval=0.5)
    client.on_start(0.0, RNG)
    client.on_client(now, ClientRequest("caller", "acquire", ttl))
    return client


# ----------------------------------------------------------------------------- server


def test_the_server_lease_ends_at_its_expiry_instant() -> None:
    server = LockServer(0, max_ttl=10)
    server.on_start(0.0, RNG)
    server.on_message(0.0, 1, AcquireRequest((1, 1), 5.0))
    assert server.holds(1, 4.999)
    assert not server.holds(1, 5.0)  # the instant it is grantable to another client
    effects = server.on_message(5.0, 2, AcquireRequest((1, 1), 5.0))
    (grant,) = [e.msg for e in effects if isinstance(e, Send)]
    assert isinstance(grant, Granted) and grant.token == 2
    assert not server.holds(1, 5.0) and server.holds(2, 5.0)


def test_the_server_refuses_local_operations() -> None:
    server = LockServer(0)
    (reply,) = server.on_client(0.0, ClientRequest("someone", "acquire", 5.0))
    assert reply == Reply("someone", "the lock server takes no client operations", ok=False)
    assert server.holder is None and server.token == 0


# ----------------------------------------------------------------------------- client


def test_client_restore_names_the_wrong_snapshot_type() -> None:
    with pytest.raises(TypeError, match=r"^expected an int incarnation, got str$"):
        LockClient(1).restore("3")


def test_a_retried_acquire_is_a_new_request_measured_from_the_retry() -> None:
    client = acquiring_client(now=0.0, ttl=9.0)
    effects = client.on_timer(2.0, "retry")
    assert effects == [
        Send(0, AcquireRequest((1, 2), 9.0)),
        SetTimer("retry", 0.5),
    ]
    assert client.acquire_sent_at == 2.0
    # the grant of the retried request: the lease runs from the retry's send time,
    # with the ttl asked for, and the original caller gets it
    effects = client.on_message(2.5, 0, Granted((1, 2), 1, 9.0))
    assert Reply("caller", LeaseInfo(1, 9.0, 11.0)) in effects
    assert client.lease == LeaseInfo(1, 9.0, 11.0)


@pytest.mark.parametrize("timer", ["renew", "expire", "unknown"])
def test_other_timers_do_nothing_while_acquiring(timer: str) -> None:
    """A timer left over from an earlier lease (a runtime's cancel raced its firing)."""
    client = acquiring_client()
    assert client.on_timer(1.0, timer) == []
    assert client.state == "acquiring" and client.last_req == (1, 1)


@pytest.mark.parametrize("state", ["idle", "held"])
def test_a_retry_timer_outside_acquiring_does_nothing(state: str) -> None:
    client = acquiring_client()
    if state == "held":
        client.on_message(0.0, 0, Granted((1, 1), 1, 9.0))
    else:
        client.on_client(0.0, ClientRequest("caller", "abort"))
    assert client.state == state
    assert client.on_timer(1.0, "retry") == []
    assert client.last_req == (1, 1)


def test_a_renewal_rearms_the_renew_timer_to_retry_it() -> None:
    client = acquiring_client()
    client.on_message(0.0, 0, Granted((1, 1), 1, 9.0))
    effects = client.on_timer(3.0, "renew")
    assert effects == [Send(0, RenewRequest((1, 2), 1, 9.0)), SetTimer("renew", 0.5)]
    # unanswered: the renew timer fires again and a new renewal goes out
    effects = client.on_timer(3.5, "renew")
    assert effects[0] == Send(0, RenewRequest((1, 3), 1, 9.0))


def test_a_release_cancels_both_lease_timers() -> None:
    client = acquiring_client()
    client.on_message(0.0, 0, Granted((1, 1), 1, 9.0))
    effects = client.on_client(1.0, ClientRequest("r", "release"))
    assert CancelTimer("renew") in effects and CancelTimer("expire") in effects


# ----------------------------------------------------------------------------- resource


@pytest.mark.parametrize(("token", "kind"), [(True, "bool"), ("3", "str"), (2.0, "float")])
def test_fenced_resource_names_a_token_of_the_wrong_type(token: object, kind: str) -> None:
    resource = FencedResource()
    with pytest.raises(TypeError, match=f"^token must be an int, got {kind}$"):
        resource.check(token)  # type: ignore[arg-type]
    assert (resource.highest, resource.last_accepted, resource.refused) == (0, 0, 0)


def test_fenced_resource_counts_every_refusal() -> None:
    resource = FencedResource()
    resource.check(5)
    for stale in (1, 2, 4):
        with pytest.raises(StaleTokenError):
            resource.check(stale)
    assert resource.refused == 3
    assert (resource.highest, resource.last_accepted) == (5, 5)


def test_fenced_resource_node_answers_the_writer_and_persists_the_highest_token() -> None:
    resource = FencedResource(9)
    assert resource.on_message(0.0, 1, WriteRequest(5, "x")) == [
        Persist(5),
        Send(1, WriteAccepted(5)),
    ]
    assert resource.on_message(0.0, 2, WriteRequest(4, "y")) == [Send(2, WriteRefused(4, 5))]
    assert resource.on_message(0.0, 3, WriteRequest(7, "z")) == [
        Persist(7),
        Send(3, WriteAccepted(7)),
    ]


def test_fenced_resource_restores_its_highest_token() -> None:
    resource = FencedResource()
    resource.restore(6)
    assert (resource.highest, resource.last_accepted) == (6, 6)
    assert not resource.accepts(5) and resource.accepts(6)
    with pytest.raises(TypeError, match=r"^expected an int, got str$"):
        resource.restore("6")


def test_fenced_resource_refuses_local_operations() -> None:
    resource = FencedResource()
    assert resource.on_client(0.0, ClientRequest("me", "write", 1)) == [
        Reply("me", "the fenced resource takes writes as messages", ok=False)
    ]
    assert resource.on_start(0.0, RNG) == [] and resource.on_timer(0.0, "x") == []
    assert resource.highest == 0


# ------------------------------------------------------------- client: answers it gets


def held_client(ttl: float = 9.0) -> LockClient:
    """A client (drift 0, renew at a third of the validity) holding token 1 until 9."""
    client = acquiring_client(now=0.0, ttl=ttl)
    client.on_message(0.0, 0, Granted((1, 1), 1, ttl))
    return client


def test_a_grant_arms_the_expire_and_renew_timers_and_stops_retrying() -> None:
    client = acquiring_client(now=0.0, ttl=9.0)
    effects = client.on_message(1.0, 0, Granted((1, 1), 4, 9.0))
    assert effects == [
        CancelTimer("retry"),
        SetTimer("expire", 8.0),
        SetTimer("renew", 3.0),
        Reply("caller", LeaseInfo(4, 9.0, 9.0)),
    ]
    assert client.state == "held" and client.acquire_sent_at is None


@pytest.mark.parametrize("arrival", [9.0, 12.0])
def test_a_grant_at_or_after_its_deadline_is_refused(arrival: float) -> None:
    client = acquiring_client(now=0.0, ttl=9.0)
    effects = client.on_message(arrival, 0, Granted((1, 1), 1, 9.0))
    assert effects == [
        CancelTimer("retry"),
        Reply("caller", "grant arrived after its lease had lapsed", ok=False),
    ]
    assert client.state == "idle" and client.lease is None and client.acquire_sent_at is None
    assert not client.entitled(arrival)
    # the client is idle again: a new acquire is a new request
    client.on_client(arrival, ClientRequest("again", "acquire", 9.0))
    assert client.last_req == (1, 2)


def test_a_denial_of_the_acquire_fails_the_caller_and_frees_the_client() -> None:
    client = acquiring_client()
    effects = client.on_message(0.5, 0, Denied((1, 1), "held by another client"))
    assert effects == [CancelTimer("retry"), Reply("caller", "held by another client", ok=False)]
    assert client.state == "idle" and client.acquire_sent_at is None
    assert client.on_timer(1.0, "retry") == []  # a late retry timer sends nothing


def test_a_denial_of_an_older_request_is_ignored() -> None:
    client = acquiring_client()
    client.on_timer(1.0, "retry")  # now waiting for (1, 2)
    assert client.on_message(1.5, 0, Denied((1, 1), "old")) == []
    assert client.state == "acquiring" and client.acquire_sent_at == 1.0
    effects = client.on_message(1.5, 0, Denied((1, 2), "held"))
    assert Reply("caller", "held", ok=False) in effects


@pytest.mark.parametrize("state", ["idle", "held"])
def test_a_denial_outside_an_acquire_or_renewal_is_ignored(state: str) -> None:
    client = held_client() if state == "held" else LockClient(1, server=0)
    if state == "idle":
        client.on_start(0.0, RNG)
    lease = client.lease
    assert client.on_message(1.0, 0, Denied((1, 1), "late")) == []
    assert client.state == state and client.lease == lease


def test_a_denied_renewal_keeps_the_lease_until_its_deadline() -> None:
    client = held_client()
    client.on_timer(3.0, "renew")  # renewal (1, 2) in flight
    assert client.on_message(3.5, 0, Denied((1, 3), "other")) == []  # not the renewal
    assert client.renewal is not None
    effects = client.on_message(3.5, 0, Denied((1, 2), "not the holder of a live lease"))
    assert effects == [CancelTimer("renew")]
    assert client.renewal is None and client.state == "held"
    assert client.entitled(8.9) and client.lease == LeaseInfo(1, 9.0, 9.0)


def test_a_renewal_answer_must_match_the_renewal_and_the_token() -> None:
    client = held_client()
    client.on_timer(3.0, "renew")  # renewal (1, 2) of token 1
    assert client.on_message(4.0, 0, Renewed((1, 2), 2, 9.0)) == []  # another token
    assert client.on_message(4.0, 0, Renewed((1, 1), 1, 9.0)) == []  # another request
    assert client.lease == LeaseInfo(1, 9.0, 9.0) and client.renewal is not None
    effects = client.on_message(4.0, 0, Renewed((1, 2), 1, 9.0))
    assert effects == [SetTimer("expire", 8.0), SetTimer("renew", 3.0)]
    assert client.lease == LeaseInfo(1, 9.0, 12.0) and client.renewal is None


def test_a_renewal_answer_after_a_release_is_ignored() -> None:
    client = held_client()
    client.on_timer(3.0, "renew")
    client.on_client(3.5, ClientRequest("r", "release"))
    assert client.on_message(4.0, 0, Renewed((1, 2), 1, 9.0)) == []
    assert client.state == "idle" and client.lease is None and not client.entitled(4.0)


def test_a_late_renewal_answer_arms_the_expire_timer_at_once() -> None:
    client = held_client()
    client.on_timer(3.0, "renew")
    # the renewal extends the lease to 12, but the answer arrives at 13
    effects = client.on_message(13.0, 0, Renewed((1, 2), 1, 9.0))
    assert SetTimer("expire", 0.0) in effects
    assert not client.entitled(13.0)


# ------------------------------------------------------------- server: what it accepts


@pytest.mark.parametrize(
    "req",
    [(1, -1), (-1, 1), (1, 1.5), (1.0, 1), (True, 1), (1, False)],
    ids=repr,
)
def test_the_server_ignores_request_ids_that_are_not_pairs_of_naturals(req: object) -> None:
    server = LockServer(0)
    server.on_start(0.0, RNG)
    for _ in range(2):
        assert server.on_message(0.0, 1, AcquireRequest(req, 5.0)) == []  # type: ignore[arg-type]
        assert server.on_message(0.0, 1, RenewRequest(req, 1, 5.0)) == []  # type: ignore[arg-type]
    assert server.ignored == 4 and server.token == 0 and server.last_req(1) is None


def test_the_server_accepts_request_ids_from_zero() -> None:
    server = LockServer(0)
    server.on_start(0.0, RNG)
    effects = server.on_message(0.0, 1, AcquireRequest((0, 0), 5.0))
    assert Send(1, Granted((0, 0), 1, 5.0)) in effects
    assert server.last_req(1) == (0, 0) and server.ignored == 0


def test_the_server_counts_every_ignored_message() -> None:
    server = LockServer(0)
    for _ in range(3):
        server.on_message(0.0, 1, "junk")
    assert server.ignored == 3


def test_the_duplicate_table_forgets_the_client_heard_from_least_recently() -> None:
    server = LockServer(0, max_clients=2)
    server.on_message(0.0, 1, AcquireRequest((1, 1), 5.0))
    server.on_message(0.0, 2, AcquireRequest((1, 1), 5.0))
    server.on_message(0.0, 1, AcquireRequest((1, 2), 5.0))  # 1 heard from again
    server.on_message(0.0, 3, AcquireRequest((1, 1), 5.0))
    assert server.last_req(2) is None
    assert server.last_req(1) == (1, 2) and server.last_req(3) == (1, 1)


def test_server_restore_names_the_wrong_snapshot_type() -> None:
    with pytest.raises(TypeError, match=r"^expected ServerDurable, got int$"):
        LockServer(0).restore(3)


def test_a_ttl_above_the_maximum_is_denied_to_its_sender_and_the_maximum_is_allowed() -> None:
    server = LockServer(0, max_ttl=5)
    server.on_start(0.0, RNG)
    denied = server.on_message(0.0, 1, AcquireRequest((1, 1), 6.0))
    assert denied == [Send(1, Denied((1, 1), "ttl 6.0 exceeds max_ttl 5.0"))]
    granted = server.on_message(0.0, 1, AcquireRequest((1, 2), 5.0))
    assert Send(1, Granted((1, 2), 1, 5.0)) in granted
    denied = server.on_message(1.0, 1, RenewRequest((1, 3), 1, 7.0))
    assert denied == [Send(1, Denied((1, 3), "ttl 7.0 exceeds max_ttl 5.0"))]
    assert server.on_message(1.0, 1, RenewRequest((1, 4), 1, 5.0)) == [
        Send(1, Renewed((1, 4), 1, 5.0))
    ]


def test_clients_have_their_own_request_ids() -> None:
    """Both clients' first request is (1, 1): the second is answered, not taken for a
    duplicate of the first."""
    server = LockServer(0)
    server.on_start(0.0, RNG)
    server.on_message(0.0, 1, AcquireRequest((1, 1), 5.0))
    assert server.on_message(1.0, 2, AcquireRequest((1, 1), 5.0)) == [
        Send(2, Denied((1, 1), "held"))
    ]


def test_the_holder_asking_again_gets_a_new_lease() -> None:
    server = LockServer(0)
    server.on_start(0.0, RNG)
    server.on_message(0.0, 1, AcquireRequest((1, 1), 5.0))
    effects = server.on_message(1.0, 1, AcquireRequest((2, 1), 5.0))
    assert Send(1, Granted((2, 1), 2, 5.0)) in effects
    assert server.holds(1, 5.9) and server.token == 2


def test_the_quiet_period_ends_at_its_last_instant() -> None:
    old = LockServer(0, max_ttl=5)
    old.on_start(0.0, RNG)
    old.on_message(0.0, 1, AcquireRequest((1, 1), 5.0))
    server = LockServer(0, max_ttl=5)
    server.restore(old.snapshot_persistent())
    server.on_start(10.0, RNG)  # quiet until 15
    assert server.on_message(14.0, 1, AcquireRequest((1, 2), 5.0)) == [
        Send(1, Denied((1, 2), "quiet period after restart"))
    ]
    assert Send(1, Granted((1, 3), 2, 5.0)) in server.on_message(
        15.0, 1, AcquireRequest((1, 3), 5.0)
    )
    assert server.on_message(15.0, 2, AcquireRequest((1, 1), 5.0)) == [
        Send(2, Denied((1, 1), "held"))
    ]


def test_malformed_releases_are_counted() -> None:
    server = LockServer(0)
    server.on_message(0.0, 1, ReleaseRequest("1"))  # type: ignore[arg-type]
    server.on_message(0.0, 1, ReleaseRequest(-1))
    assert server.ignored == 2


# ------------------------------------------------------------- client: misuse answers


def test_misuse_is_answered_to_the_caller_that_misused() -> None:
    client = LockClient(1, server=0)
    client.on_start(0.0, RNG)
    assert client.on_client(0.0, ClientRequest("a", "acquire", -1)) == [
        Reply("a", "ttl must be > 0, got -1", ok=False)
    ]
    assert client.on_client(0.0, ClientRequest("b", "release")) == [
        Reply("b", "no lease held", ok=False)
    ]
    client.on_client(0.0, ClientRequest("c", "acquire", 9.0))
    assert client.on_client(0.0, ClientRequest("d", "acquire", 9.0)) == [
        Reply("d", "already acquiring", ok=False)
    ]
    client.on_message(0.0, 0, Granted((1, 1), 1, 9.0))
    assert client.on_client(1.0, ClientRequest("e", "acquire", 9.0)) == [
        Reply("e", "already held", ok=False)
    ]
    assert client.state == "held" and client.last_req == (1, 1)


def test_the_client_counts_every_message_it_ignores() -> None:
    client = acquiring_client()
    for src in (5, 6, 7):
        client.on_message(0.0, src, Granted((1, 1), 1, 9.0))  # not from its server
    client.on_message(0.0, 0, "junk")
    client.on_message(0.0, 0, WriteAccepted(1))
    assert client.ignored == 5
    assert client.state == "acquiring"


def test_release_and_abort_answer_the_right_callers() -> None:
    client = LockClient(1, server=0)
    client.on_start(0.0, RNG)
    assert client.on_client(0.0, ClientRequest("x", "abort")) == [
        Reply("x", "no acquire outstanding", ok=False)
    ]
    client.on_client(0.0, ClientRequest("acquirer", "acquire", 9.0))
    assert client.on_client(0.5, ClientRequest("aborter", "abort")) == [
        CancelTimer("retry"),
        Reply("acquirer", "aborted", ok=False),
    ]
    client.on_client(1.0, ClientRequest("acquirer", "acquire", 9.0))
    client.on_message(1.0, 0, Granted((1, 2), 3, 9.0))
    effects = client.on_client(2.0, ClientRequest("releaser", "release"))
    assert effects[-1] == Reply("releaser", 3)


def test_a_stale_renewal_is_denied_with_its_request_id() -> None:
    server = LockServer(0)
    server.on_start(0.0, RNG)
    server.on_message(0.0, 1, AcquireRequest((1, 1), 5.0))
    assert server.on_message(6.0, 1, RenewRequest((1, 2), 1, 5.0)) == [
        Send(1, Denied((1, 2), "not the holder of a live lease"))
    ]
    # per client: client 2's renewal (1, 2) is not a duplicate of client 1's
    assert server.on_message(6.0, 2, RenewRequest((1, 2), 1, 5.0)) == [
        Send(2, Denied((1, 2), "not the holder of a live lease"))
    ]


def test_a_renewal_with_a_longer_ttl_persists_it_for_the_quiet_period() -> None:
    server = LockServer(0, max_ttl=10)
    server.on_start(0.0, RNG)
    server.on_message(0.0, 1, AcquireRequest((1, 1), 5.0))
    effects = server.on_message(1.0, 1, RenewRequest((1, 2), 1, 8.0))
    assert effects[0] == Persist(server.snapshot_persistent())
    assert server.snapshot_persistent().max_ttl_granted == 8.0
    reborn = LockServer(0, max_ttl=10)
    reborn.restore(server.snapshot_persistent())
    reborn.on_start(2.0, RNG)
    assert reborn.quiet_until == 10.0


def test_a_server_may_remember_a_single_client() -> None:
    server = LockServer(0, max_clients=1)
    server.on_message(0.0, 1, AcquireRequest((1, 1), 5.0))
    server.on_message(0.0, 2, AcquireRequest((1, 1), 5.0))
    assert server.last_req(1) is None and server.last_req(2) == (1, 1)
