"""Unit tests of the lease lock's sans-IO cores (protocols/lease_lock.py)."""

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
    validity,
)

RNG = random.Random(0)


def sends(effects: list[object]) -> list[object]:
    return [e.msg for e in effects if isinstance(e, Send)]


def test_validity_accounts_for_drift_on_both_sides() -> None:
    assert validity(10, 0) == 10
    assert validity(10, 0.25) == pytest.approx(6.0)
    # the client's validity in real time never outlasts the server's ttl in real time
    for rho in (0.0, 0.001, 0.1, 0.5, 0.9):
        assert validity(10, rho) / (1 - rho) <= 10 / (1 + rho) + 1e-9


@pytest.mark.parametrize(
    ("ttl", "rho", "message"),
    [(0, 0.1, "ttl must be > 0"), (-1, 0.1, "ttl must be > 0"), (1, 1.0, "max_drift must be in")],
)
def test_validity_rejects_bad_values(ttl: float, rho: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validity(ttl, rho)


# ----------------------------------------------------------------------------- server


def started_server(**kw: float) -> LockServer:
    server = LockServer(0, **kw)  # type: ignore[arg-type]
    assert server.on_start(0.0, RNG) == []
    return server


def test_server_grants_then_denies_a_second_client_until_expiry() -> None:
    server = started_server(max_ttl=10)
    effects = server.on_message(0.0, 1, AcquireRequest((1, 1), 5.0))
    assert effects == [Persist(server.snapshot_persistent()), Send(1, Granted((1, 1), 1, 5.0))]
    assert server.on_message(1.0, 2, AcquireRequest((1, 1), 5.0)) == [
        Send(2, Denied((1, 1), "held"))
    ]
    # at expiry the lease may go to another client, with a larger token
    assert sends(server.on_message(5.0, 2, AcquireRequest((1, 2), 5.0))) == [
        Granted((1, 2), 2, 5.0)
    ]
    assert server.holder == 2


def test_server_persists_token_before_sending_the_grant() -> None:
    server = started_server()
    effects = server.on_message(0.0, 1, AcquireRequest((1, 1), 5.0))
    kinds = [type(e) for e in effects]
    assert kinds.index(Persist) < kinds.index(Send)


def test_server_ignores_duplicate_and_older_requests() -> None:
    server = started_server()
    server.on_message(0.0, 1, AcquireRequest((1, 2), 5.0))
    assert server.on_message(0.1, 1, AcquireRequest((1, 2), 5.0)) == []
    assert server.on_message(0.1, 1, AcquireRequest((1, 1), 5.0)) == []
    assert server.token == 1


def test_server_renews_only_the_live_holder_with_the_current_token() -> None:
    server = started_server()
    server.on_message(0.0, 1, AcquireRequest((1, 1), 5.0))
    assert sends(server.on_message(4.0, 1, RenewRequest((1, 2), 1, 5.0))) == [
        Renewed((1, 2), 1, 5.0)
    ]
    assert server.expiry == 9.0
    denied = sends(server.on_message(4.0, 1, RenewRequest((1, 3), 7, 5.0)))
    assert isinstance(denied[0], Denied)
    # after expiry a renewal is refused
    assert isinstance(sends(server.on_message(20.0, 1, RenewRequest((1, 4), 1, 5.0)))[0], Denied)


def test_release_frees_the_lease_but_only_for_the_matching_token() -> None:
    server = started_server()
    server.on_message(0.0, 1, AcquireRequest((1, 1), 5.0))
    assert server.on_message(1.0, 1, ReleaseRequest(99)) == []
    assert server.holder == 1
    server.on_message(1.0, 1, ReleaseRequest(1))
    assert server.holder is None
    assert sends(server.on_message(1.0, 2, AcquireRequest((1, 1), 5.0)))[0] == Granted(
        (1, 1), 2, 5.0
    )


def test_restarted_server_keeps_tokens_increasing_and_stays_quiet() -> None:
    server = started_server()
    server.on_message(0.0, 1, AcquireRequest((1, 1), 5.0))
    durable = server.snapshot_persistent()
    reborn = LockServer(0)
    reborn.restore(durable)
    reborn.on_start(2.0, RNG)
    denied = sends(reborn.on_message(3.0, 2, AcquireRequest((1, 1), 5.0)))[0]
    assert denied == Denied((1, 1), "quiet period after restart")
    granted = sends(reborn.on_message(7.0, 2, AcquireRequest((1, 2), 5.0)))[0]
    assert granted == Granted((1, 2), 2, 5.0)


def test_server_refuses_a_ttl_above_its_maximum() -> None:
    server = started_server(max_ttl=10)
    denied = sends(server.on_message(0.0, 1, AcquireRequest((1, 1), 11.0)))[0]
    assert isinstance(denied, Denied) and "exceeds max_ttl" in denied.reason


@pytest.mark.parametrize(
    "msg",
    [
        "garbage",
        AcquireRequest((1,), 5.0),  # type: ignore[arg-type]
        AcquireRequest((1, 1), -5.0),
        AcquireRequest((1, 1), True),  # type: ignore[arg-type]
        RenewRequest((1, 1), 0, 5.0),
        ReleaseRequest("1"),  # type: ignore[arg-type]
        Granted((1, 1), 1, 5.0),
    ],
)
def test_server_counts_and_ignores_malformed_messages(msg: object) -> None:
    server = started_server()
    assert server.on_message(0.0, 1, msg) == []
    assert server.ignored == 1
    assert server.token == 0


def test_server_duplicate_table_is_bounded() -> None:
    server = started_server(max_clients=3)
    for client in range(10):
        server.on_message(0.0, client, AcquireRequest((1, 1), 5.0))
    assert [server.last_req(c) for c in range(10)].count(None) == 7


def test_server_rejects_bad_configuration() -> None:
    with pytest.raises(ValueError, match="max_ttl must be > 0"):
        LockServer(0, max_ttl=0)
    with pytest.raises(ValueError, match="max_clients must be > 0"):
        LockServer(0, max_clients=0)


# ----------------------------------------------------------------------------- client


def started_client(**kw: float) -> LockClient:
    client = LockClient(1, server=0, **kw)  # type: ignore[arg-type]
    assert client.on_start(0.0, RNG) == [Persist(1)]
    return client


def test_client_measures_the_lease_from_the_send_time() -> None:
    client = started_client(max_drift=0.25)
    effects = client.on_client(10.0, ClientRequest("caller", "acquire", 10.0))
    assert sends(effects) == [AcquireRequest((1, 1), 10.0)]
    effects = client.on_message(12.0, 0, Granted((1, 1), 1, 10.0))
    # validity 6 from the send at 10, not from the arrival at 12
    assert Reply("caller", LeaseInfo(1, 10.0, 16.0)) in effects
    assert SetTimer("expire", 4.0) in effects
    assert client.entitled(15.9)
    assert not client.entitled(16.0)


def test_client_refuses_a_grant_that_arrives_after_its_lease_lapsed() -> None:
    client = started_client(max_drift=0.25)
    client.on_client(0.0, ClientRequest("caller", "acquire", 10.0))
    effects = client.on_message(6.5, 0, Granted((1, 1), 1, 10.0))
    assert any(isinstance(e, Reply) and not e.ok for e in effects)
    assert client.state == "idle"


def test_client_ignores_answers_to_other_requests() -> None:
    client = started_client()
    client.on_client(0.0, ClientRequest("caller", "acquire", 10.0))
    client.on_timer(1.0, "retry")  # re-sent as request (1, 2)
    assert client.on_message(1.5, 0, Granted((1, 1), 1, 10.0)) == []
    assert client.state == "acquiring"
    assert client.on_message(1.5, 5, Granted((1, 2), 1, 10.0)) == []  # not from the server
    assert client.ignored == 1


def test_client_renews_and_extends_from_the_renewal_send_time() -> None:
    client = started_client()
    client.on_client(0.0, ClientRequest("caller", "acquire", 9.0))
    client.on_message(0.0, 0, Granted((1, 1), 1, 9.0))
    effects = client.on_timer(3.0, "renew")
    assert sends(effects) == [RenewRequest((1, 2), 1, 9.0)]
    client.on_message(4.0, 0, Renewed((1, 2), 1, 9.0))
    assert client.lease == LeaseInfo(1, 9.0, 12.0)


def test_client_release_drops_the_lease_and_tells_the_server() -> None:
    client = started_client()
    client.on_client(0.0, ClientRequest("a", "acquire", 9.0))
    client.on_message(0.0, 0, Granted((1, 1), 1, 9.0))
    effects = client.on_client(1.0, ClientRequest("r", "release"))
    assert ReleaseRequest(1) in sends(effects)
    assert CancelTimer("renew") in effects
    assert client.state == "idle" and not client.entitled(1.0)


def test_client_expires_its_lease_on_the_expire_timer() -> None:
    client = started_client()
    client.on_client(0.0, ClientRequest("a", "acquire", 9.0))
    client.on_message(0.0, 0, Granted((1, 1), 1, 9.0))
    assert client.on_timer(8.0, "expire") == []  # early firing: nothing happens
    client.on_timer(9.0, "expire")
    assert client.lease is None and client.state == "idle"


def test_restarted_client_never_reuses_a_request_id() -> None:
    client = started_client()
    client.on_client(0.0, ClientRequest("a", "acquire", 9.0))
    reborn = LockClient(1, server=0)
    reborn.restore(client.snapshot_persistent())
    reborn.on_start(5.0, RNG)
    reborn.on_client(5.0, ClientRequest("b", "acquire", 9.0))
    assert reborn.last_req > client.last_req
    # the pre-crash grant cannot be taken for the new request
    assert reborn.on_message(5.0, 0, Granted((1, 1), 1, 9.0)) == []


@pytest.mark.parametrize(
    ("op", "value", "message"),
    [
        ("acquire", -1, "ttl must be > 0"),
        ("release", None, "no lease held"),
        ("abort", None, "no acquire outstanding"),
        ("fly", None, "unknown operation"),
    ],
)
def test_client_answers_misuse_with_a_failed_reply(op: str, value: object, message: str) -> None:
    client = started_client()
    (reply,) = client.on_client(0.0, ClientRequest("x", op, value))
    assert isinstance(reply, Reply) and not reply.ok and message in reply.value


def test_client_rejects_bad_configuration() -> None:
    with pytest.raises(ValueError, match="max_drift"):
        LockClient(1, max_drift=1.5)
    with pytest.raises(ValueError, match="retry_interval"):
        LockClient(1, retry_interval=0)
    with pytest.raises(ValueError, match="renew_fraction"):
        LockClient(1, renew_fraction=1.0)
    with pytest.raises(ValueError, match="max_abandoned must be an int >= 1, got 0"):
        LockClient(1, max_abandoned=0)


# ------------------------------------------------------------- abandoned acquires


def test_a_grant_for_an_abandoned_acquire_is_released_at_once() -> None:
    server = started_server(max_ttl=30)
    a = started_client()
    (request,) = sends(a.on_client(0.0, ClientRequest("caller", "acquire", 20.0)))
    abort = a.on_client(0.1, ClientRequest("caller", "abort"))
    assert Reply("caller", "aborted", ok=False) in abort and a.state == "idle"
    assert a.abandoned == ((1, 1),)
    # the request was already on its way: the server grants it
    (grant,) = sends(server.on_message(0.2, 1, request))
    assert isinstance(grant, Granted) and server.holds(1, 0.2)
    # the client answers the grant nobody waits for with a release of its token
    effects = a.on_message(0.3, 0, grant)
    assert effects == [Send(0, ReleaseRequest(grant.token))]
    assert a.state == "idle" and a.lease is None and a.released_unused == 1
    server.on_message(0.4, 1, ReleaseRequest(grant.token))
    assert not server.holds(1, 0.4)
    # so another client gets the lock now, not when the 20 s lease would expire
    assert sends(server.on_message(0.5, 2, AcquireRequest((1, 1), 5.0))) == [
        Granted((1, 1), grant.token + 1, 5.0)
    ]


def test_every_retry_of_an_abandoned_acquire_is_remembered() -> None:
    a = started_client()
    a.on_client(0.0, ClientRequest("c", "acquire", 9.0))
    a.on_timer(1.0, "retry")
    a.on_timer(2.0, "retry")
    a.on_client(2.5, ClientRequest("c", "abort"))
    assert a.abandoned == ((1, 1), (1, 2), (1, 3))
    # the server may have answered any of them (the others were duplicates to it)
    assert sends(a.on_message(3.0, 0, Granted((1, 2), 7, 9.0))) == [ReleaseRequest(7)]
    # an attempt that succeeded is not remembered: its lease is in use
    a.on_client(4.0, ClientRequest("c", "acquire", 9.0))
    a.on_message(4.0, 0, Granted((1, 4), 8, 9.0))
    assert a.abandoned == ((1, 1), (1, 2), (1, 3)) and a.state == "held"
    # a duplicate of the grant in use is never released
    assert a.on_message(4.5, 0, Granted((1, 4), 8, 9.0)) == []
    assert a.entitled(4.5)


def test_the_abandoned_table_is_bounded_oldest_forgotten_first() -> None:
    a = started_client(max_abandoned=2)
    for i in range(3):
        a.on_client(float(i), ClientRequest("c", "acquire", 9.0))
        a.on_client(float(i), ClientRequest("c", "abort"))
    assert a.abandoned == ((1, 2), (1, 3))
    assert a.on_message(5.0, 0, Granted((1, 1), 1, 9.0)) == []  # forgotten: left to expire
    assert sends(a.on_message(5.0, 0, Granted((1, 3), 3, 9.0))) == [ReleaseRequest(3)]
    # a long retry series keeps only the newest ids too
    a.on_client(6.0, ClientRequest("c", "acquire", 9.0))
    for t in range(4):
        a.on_timer(7.0 + t, "retry")
    a.on_client(12.0, ClientRequest("c", "abort"))
    assert a.abandoned == ((1, 7), (1, 8))


def test_a_malformed_grant_is_not_released() -> None:
    a = started_client()
    a.on_client(0.0, ClientRequest("c", "acquire", 9.0))
    a.on_client(0.0, ClientRequest("c", "abort"))
    assert a.on_message(1.0, 0, Granted([1, 1], 1, 9.0)) == []  # type: ignore[arg-type]
    assert a.on_message(1.0, 0, Granted((1, 1), 0, 9.0)) == []


# --------------------------------------------------------------------------- resource


def test_fenced_resource_refuses_stale_tokens() -> None:
    resource = FencedResource()
    resource.check(2)
    resource.check(2)
    with pytest.raises(StaleTokenError, match="stale fencing token 1: resource already accepted 2"):
        resource.check(1)
    resource.check(3)
    assert (resource.highest, resource.last_accepted, resource.refused) == (3, 3, 1)
    with pytest.raises(TypeError):
        resource.check("3")  # type: ignore[arg-type]


def test_fenced_resource_as_a_node() -> None:
    resource = FencedResource(9)
    assert sends(resource.on_message(0.0, 1, WriteRequest(5, "x"))) == [WriteAccepted(5)]
    assert sends(resource.on_message(0.0, 2, WriteRequest(4, "y"))) == [WriteRefused(4, 5)]
    assert resource.on_message(0.0, 2, "junk") == []
