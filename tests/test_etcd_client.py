"""The etcd client against an in-process fake gateway: JSON shapes, errors,
failover rules, and the lease scope under injected cancellations.

The same client against a real etcd is tested in ``test_etcd_live.py``."""

from __future__ import annotations

import httpx
import pytest
import trio
import trio.testing
from fake_etcd import FakeEtcd, fake_client
from hypothesis import given, settings

from trio_foundation import LeadershipLostError
from trio_foundation.etcd import (
    Compare,
    EtcdClient,
    EtcdLeaseLostError,
    EtcdLeaseNotFoundError,
    EtcdProtocolError,
    EtcdRequestError,
    EtcdUnavailableError,
    PutOp,
    open_etcd_client,
    open_etcd_election,
    open_etcd_registry,
    parse_endpoints,
    prefix_end,
)
from trio_foundation.etcd._client import collapse
from trio_foundation.verify.cancellation import (
    InjectionPlan,
    Injector,
    injection_plans,
    run_injected,
)


def test_endpoints_are_normalised() -> None:
    assert parse_endpoints("127.0.0.1:2379, etcd://h:1,https://x:3/") == (
        "http://127.0.0.1:2379",
        "http://h:1",
        "https://x:3",
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("redis://h:1", "unknown scheme 'redis'"),
        ("h", "expected HOST:PORT"),
        ("http://h:port", "expected HOST:PORT"),
        ("", "no etcd endpoint"),
    ],
)
def test_bad_endpoints_are_refused_by_name(raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_endpoints(raw)


def test_prefix_end_follows_etcd() -> None:
    assert prefix_end(b"a/") == b"a0"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff\xff") == b"\0"


def test_compare_builders_check_operand_types() -> None:
    assert (Compare.value("k") == b"v") == Compare(b"k", "VALUE", "EQUAL", b"v")
    assert (Compare.mod_revision("k") > 3).to_json()["mod_revision"] == "3"
    with pytest.raises(TypeError, match="needs an int"):
        Compare.version("k") == "x"  # noqa: B015


async def test_put_get_revisions_and_lease_attachment() -> None:
    fake = FakeEtcd()
    http, client = fake_client(fake)
    async with http:
        r1 = await client.put("a", "1")
        r2 = await client.put("a", b"2")
        kv = await client.get("a")
        assert kv is not None
        assert (kv.value, kv.create_revision, kv.mod_revision, kv.version) == (
            b"2",
            r1.revision,
            r2.revision,
            2,
        )
        assert await client.get("missing") is None
        lease = await client.grant_lease(5)
        await client.put("owned", "x", lease=lease.id)
        await client.revoke_lease(lease.id)
        assert await client.get("owned") is None
        with pytest.raises(EtcdLeaseNotFoundError, match=f"lease {lease.id} not found"):
            await client.put("owned", "x", lease=lease.id)


@pytest.mark.parametrize(
    ("response", "error", "message"),
    [
        (httpx.Response(200, content=b"{bad"), EtcdProtocolError, "not JSON"),
        (httpx.Response(200, content=b"[1,2]"), EtcdProtocolError, "not a JSON object"),
        (httpx.Response(404, text="404 page not found"), EtcdProtocolError, "HTTP 404"),
        (
            httpx.Response(200, json={"header": {}, "kvs": [{"key": "!!"}]}),
            EtcdProtocolError,
            "not valid base64",
        ),
        (
            httpx.Response(200, json={"header": {"revision": "x"}}),
            EtcdProtocolError,
            "not an integer",
        ),
        (
            httpx.Response(200, json={"error": "bad", "code": 3, "message": "invalid key"}),
            EtcdRequestError,
            "invalid key",
        ),
    ],
)
async def test_malformed_and_refused_answers_are_typed_errors(
    response: httpx.Response, error: type[Exception], message: str
) -> None:
    fake = FakeEtcd()
    fake.fail_next.append(lambda request: response)
    http, client = fake_client(fake)
    async with http:
        with pytest.raises(error, match=message) as info:
            await client.get("k")
        assert "/v3/kv/range at http://fake:2379" in str(info.value)
        # the client is still usable afterwards
        await client.put("k", "v")


async def test_a_refused_connection_fails_over_for_writes_too() -> None:
    fake = FakeEtcd()

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    fake.fail_next.append(refuse)
    http, client = fake_client(fake, endpoints=("http://down:1", "http://up:2"))
    async with http:
        await client.put("k", "v")
        assert client._preferred == 1


async def test_a_write_with_no_answer_is_outcome_unknown_and_not_retried() -> None:
    fake = FakeEtcd()

    def lose_answer(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadError("connection reset", request=request)

    fake.fail_next.append(lose_answer)
    http, client = fake_client(fake, endpoints=("http://a:1", "http://b:2"))
    async with http:
        with pytest.raises(EtcdUnavailableError) as info:
            await client.put("k", "v")
        assert info.value.outcome_unknown
        assert fake.calls == ["/v3/kv/put"]  # not sent again


async def test_a_read_with_no_answer_is_retried_on_the_next_endpoint() -> None:
    fake = FakeEtcd()

    def lose_answer(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadError("connection reset", request=request)

    fake.fail_next.append(lose_answer)
    http, client = fake_client(fake, endpoints=("http://a:1", "http://b:2"))
    async with http:
        assert await client.get("k") is None
        assert fake.calls == ["/v3/kv/range", "/v3/kv/range"]


async def test_an_unreachable_cluster_is_named_within_the_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    http = httpx.AsyncClient(transport=httpx.MockTransport(refuse))
    client = EtcdClient(http, ("http://a:1", "http://b:2"), timeout=3.0)
    async with http:
        start = trio.current_time()
        with pytest.raises(
            EtcdUnavailableError, match=r"within 3 s \(tried http://a:1, http://b:2\)"
        ):
            await client.get("k")
        assert trio.current_time() - start == pytest.approx(3.0)


async def test_open_client_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="timeout must be > 0"):
        async with open_etcd_client("h:1", timeout=0):
            pass
    with pytest.raises(ValueError, match="both username and password"):
        async with open_etcd_client("h:1", username="u"):
            pass
    with pytest.raises(ValueError, match="unknown scheme 'tcp'"):
        async with open_etcd_client("tcp://h:1"):
            pass


async def test_txn_compare_and_swap() -> None:
    fake_answers = {
        "succeeded": True,
        "header": {"revision": "7"},
        "responses": [{"response_put": {"header": {"revision": "7"}}}],
    }
    fake = FakeEtcd()
    seen: list[bytes] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.content)
        return httpx.Response(200, json=fake_answers)

    fake.fail_next.append(answer)
    http, client = fake_client(fake)
    async with http:
        result = await client.txn([Compare.value("k") == b"old"], [PutOp(b"k", b"new")])
    assert result.succeeded and result.revision == 7
    assert b'"target": "VALUE"' in seen[0] and b'"request_put"' in seen[0]


# -- the lease scope ----------------------------------------------------------------------------


async def test_lease_scope_renews_across_many_ttls(autojump_clock: trio.testing.MockClock) -> None:
    fake = FakeEtcd()
    http, client = fake_client(fake)
    async with http, client.lease(3) as lease:
        await trio.sleep(20)  # many ttls: only renewals keep it alive
        assert lease.id in fake.leases
    assert lease.id not in fake.leases  # revoked on exit


async def test_lease_loss_cancels_the_body_and_raises(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fake = FakeEtcd()
    http, client = fake_client(fake)
    reached = False
    async with http:
        with pytest.raises(EtcdLeaseLostError, match="etcd says the lease has ended"):
            async with client.lease(3) as lease:
                await client.revoke_lease(lease.id)  # someone else ends it
                await trio.sleep(10)
                reached = True
    assert not reached


async def test_unanswered_keepalives_cancel_the_body_before_expiry(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fake = FakeEtcd()
    http, client = fake_client(fake, timeout=0.5)
    async with http:
        with pytest.raises(EtcdLeaseLostError, match="not renewed before the safe deadline"):
            async with client.lease(4, margin=0.5) as lease:
                granted_at = trio.current_time()

                def unreachable(request: httpx.Request) -> httpx.Response:
                    raise httpx.ConnectError("partitioned", request=request)

                fake.fail_next.extend([unreachable] * 1000)
                try:
                    await trio.sleep(100)
                finally:
                    cancelled_at = trio.current_time()
                    fake.fail_next.clear()
    # the body stopped before etcd could have expired the lease
    assert cancelled_at <= granted_at + lease.ttl - 0.5 + 1e-9


async def test_an_error_in_the_body_comes_out_unwrapped() -> None:
    fake = FakeEtcd()
    http, client = fake_client(fake)
    async with http:
        with pytest.raises(KeyError):
            async with client.lease(5):
                raise KeyError("mine")
    assert fake.leases == {}


def lease_scenario(fake: FakeEtcd):  # type: ignore[no-untyped-def]
    async def scenario(inj: Injector) -> None:
        http, client = fake_client(fake)
        async with http:
            with inj.scope("caller"):
                async with client.lease(3):
                    with inj.scope("body"):
                        await trio.sleep(10)

    return scenario


@settings(deadline=None)
@given(plan=injection_plans(max_step=30, max_delay=15))
def test_lease_scope_under_injected_cancellations(plan: InjectionPlan) -> None:
    """Cancel and time out the caller and the body at arbitrary checkpoints. Afterwards:
    every lease whose id reached the client was revoked; a lease granted by a request
    whose answer was cut off by the cancellation expires within its ttl of the caller
    leaving; only the documented lease loss escapes (cancellations are absorbed by the
    scopes that caused them)."""
    fake = FakeEtcd()
    result = run_injected(lease_scenario(fake), plan, allowed=(EtcdLeaseLostError,))
    for lease_id, (ttl, expires_at) in fake.leases.items():
        assert lease_id not in fake.delivered_grants, f"lease {lease_id} not revoked on exit"
        assert expires_at <= result.time + ttl


def test_collapse_prefers_the_blocks_exception_and_names_the_others() -> None:
    """A block and a context's own task failing at once: the block's exception comes
    out unwrapped, with a note for the task's (open_etcd_election, open_etcd_registry)."""
    body = LeadershipLostError("e", "a", "not renewed before the safe deadline")
    observer = EtcdUnavailableError("could not open a watch on any endpoint within 1 s")
    group = BaseExceptionGroup("nursery", [observer, BaseExceptionGroup("inner", [body])])
    assert collapse(group, prefer=body) is body
    assert body.__notes__ == [
        "raised at the same time by the context's own task: EtcdUnavailableError:"
        " could not open a watch on any endpoint within 1 s"
    ]
    # without a preference, or when the block raised nothing, the group stays whole
    assert collapse(group) is group
    assert collapse(group, prefer=ValueError("not in the group")) is group


def test_collapse_gives_back_a_group_the_block_raised_whole() -> None:
    """A block that raises an ExceptionGroup itself gets it back as it raised it
    (not its single leaf, not wrapped in the nursery's group), with or without a
    context task failing at the same time."""
    leaf = KeyError("a")
    body = ExceptionGroup("body", [leaf])
    assert collapse(ExceptionGroup("nursery", [body]), prefer=body) is body
    assert not hasattr(body, "__notes__")
    two = ExceptionGroup("body", [KeyError("b"), ValueError("c")])
    assert collapse(ExceptionGroup("nursery", [two]), prefer=two) is two
    observer = EtcdUnavailableError("watch lost")
    assert collapse(ExceptionGroup("nursery", [observer, two]), prefer=two) is two
    assert two.__notes__ == [
        "raised at the same time by the context's own task: EtcdUnavailableError: watch lost"
    ]
    # a block that was only cancelled does not hide the task's failure
    cancelled = BaseExceptionGroup("nursery", [observer])
    assert collapse(cancelled, prefer=ValueError("elsewhere")) is observer


async def test_lease_scope_gives_back_a_group_the_block_raised_whole(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """As a plain ``async with``: the block's own ExceptionGroup comes out as it was
    raised (it used to come out as its single leaf, or wrapped in the nursery's group)."""
    fake = FakeEtcd()
    http, client = fake_client(fake)
    async with http:
        for leaves in ([KeyError("a")], [KeyError("a"), ValueError("b")]):
            raised = ExceptionGroup("block", leaves)
            with pytest.raises(ExceptionGroup) as caught:
                async with client.lease(3):
                    raise raised
            assert caught.value is raised
        assert not fake.leases  # revoked on exit each time


async def test_election_and_registry_give_back_a_group_the_block_raised_whole(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """open_etcd_election and open_etcd_registry, as a plain ``async with``: a
    block's one-leaf ExceptionGroup used to come out as its bare leaf."""
    fake = FakeEtcd()
    http, client = fake_client(fake)
    async with http:
        for opener in (
            lambda: open_etcd_election(client, "e1"),
            lambda: open_etcd_registry(client, prefix="r1/"),
        ):
            raised = ExceptionGroup("block", [KeyError("a")])
            with pytest.raises(ExceptionGroup) as caught:
                async with opener():
                    raise raised
            assert caught.value is raised
