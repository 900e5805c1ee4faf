"""A Trio client for etcd v3, over etcd's HTTP/JSON gateway (``/v3/...``).

Why the gateway: the PyPI gRPC clients are asyncio-only or broken with current
protobuf, while ``httpx`` runs under Trio. Every etcd v3 server serves the
gateway on its client port; its JSON is protobuf's mapping of the gRPC API
(https://etcd.io/docs/v3.5/dev-guide/api_grpc_gateway/).

Failover: a call goes to the endpoint that answered last; when an endpoint
cannot be reached it tries the next, until the call's ``timeout`` (seconds)
runs out. A request that changes state is retried on another endpoint only if
it was never sent (the connection was refused); if it was sent and no answer
came, :class:`EtcdUnavailableError` is raised with ``outcome_unknown=True`` —
it may have been applied. Reads are retried freely.

Every call is a checkpoint. Cancelling a call abandons its HTTP request: a
read has no effect; a write may or may not have been applied.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import ssl
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final, Literal, TypeVar, final

import attrs
import httpx
import trio

from ..coordination.kv import to_bytes
from ._errors import (
    GRPC_FAILED_PRECONDITION,
    GRPC_INVALID_ARGUMENT,
    GRPC_NOT_FOUND,
    GRPC_OUT_OF_RANGE,
    GRPC_PERMISSION_DENIED,
    GRPC_UNAUTHENTICATED,
    GRPC_UNAVAILABLE,
    EtcdAuthError,
    EtcdCompactedError,
    EtcdError,
    EtcdLeaseLostError,
    EtcdLeaseNotFoundError,
    EtcdProtocolError,
    EtcdRequestError,
    EtcdUnavailableError,
)
from ._types import (
    Bytesish,
    Compare,
    DeleteResult,
    KeyValue,
    Op,
    PutResult,
    RangeResult,
    TxnResult,
    WatchEvent,
    as_dict,
    as_int,
    as_list,
    b64,
    decode_event,
    decode_kv,
    decode_range,
    decode_txn,
    header_revision,
    prefix_end,
)

__all__ = ["EtcdClient", "EtcdLease", "Watch", "open_etcd_client", "parse_endpoints"]

log = logging.getLogger("trio_foundation.etcd")

T = TypeVar("T")

SortTarget = Literal["KEY", "VERSION", "CREATE", "MOD", "VALUE"]
SortOrder = Literal["ASCEND", "DESCEND"]


def _identity(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj


# A gateway answer larger than this is refused (etcd's own default request limit is 1.5 MiB;
# a range over many keys can be larger, so this bounds memory, not etcd).
MAX_RESPONSE_BYTES: Final = 64 * 1024 * 1024


def parse_endpoints(endpoints: str | Sequence[str]) -> tuple[str, ...]:
    """Normalise endpoints: ``"h1:p1,h2:p2"``, ``["http://h:p"]`` or ``"etcd://h:p"``.

    Returns:
        ``http(s)://host:port`` URLs without a trailing slash.

    Raises:
        ValueError: an empty list, an unknown scheme, or an endpoint without a port.
    """
    items = endpoints.split(",") if isinstance(endpoints, str) else list(endpoints)
    out: list[str] = []
    for raw in items:
        item = raw.strip().rstrip("/")
        if not item:
            continue
        scheme, sep, rest = item.partition("://")
        if not sep:
            scheme, rest = "http", item
        if scheme == "etcd":
            scheme = "http"
        elif scheme == "etcds":
            scheme = "https"
        if scheme not in ("http", "https"):
            raise ValueError(
                f"etcd endpoint {raw.strip()!r}: unknown scheme {scheme!r} "
                "(use http://, https://, etcd:// or etcds://)"
            )
        host, colon, port = rest.rpartition(":")
        if not colon or not host or not port.isdigit() or "/" in rest:
            raise ValueError(f"etcd endpoint {raw.strip()!r}: expected HOST:PORT")
        out.append(f"{scheme}://{rest}")
    if not out:
        raise ValueError("no etcd endpoint given")
    return tuple(out)


def _leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions other than groups that ``exc`` is or carries."""
    leaves: list[BaseException] = []
    stack: list[BaseException] = [exc]
    while stack:
        item = stack.pop()
        if isinstance(item, BaseExceptionGroup):
            stack.extend(item.exceptions)
        else:
            leaves.append(item)
    return leaves


def collapse(
    group: BaseExceptionGroup[BaseException], prefer: BaseException | None = None
) -> BaseException:
    """The one exception a context manager's body raised, out of the group its
    internal nursery wrapped it in (together with ``Cancelled`` from the nursery's
    own tasks); the group itself if it holds anything else.

    When the group holds several exceptions and one of them is ``prefer`` (the
    body's own), that one is returned, with a note naming each of the others (a
    background task of the context that failed at the same time, e.g. an
    observer that lost etcd in the same cut as the body's lease): a caller's
    ``except`` clauses then work as for a plain ``async with``, and nothing is lost.
    A ``prefer`` that is itself a group (the body raised one) is matched by its
    leaves and returned whole, as a plain ``async with`` would raise it.
    """
    leaves = _leaves(group)
    real = [e for e in leaves if not isinstance(e, trio.Cancelled)]
    if prefer is not None:
        # the block's own exception may itself be a group: compare its leaves
        own = {id(e) for e in _leaves(prefer) if not isinstance(e, trio.Cancelled)}
        if own and own <= {id(e) for e in real}:
            for other in real:
                if id(other) in own:
                    continue
                prefer.add_note(
                    f"raised at the same time by the context's own task:"
                    f" {type(other).__name__}: {other}"
                )
            return prefer
    if len(real) == 1:
        return real[0]
    if not real and leaves:
        return leaves[0]
    return group


@final
@attrs.define
class EtcdLease:
    """A lease, as granted by :meth:`EtcdClient.grant_lease` or held by :meth:`EtcdClient.lease`.

    Attributes:
        id: etcd's lease id; attach keys to it with ``put(..., lease=lease.id)``.
        ttl: the ttl etcd granted, in seconds (etcd may round a requested ttl up).
        deadline: inside :meth:`EtcdClient.lease`, the Trio time at which the block is
            cancelled unless a keep-alive is acknowledged first (moves on renewal).
        renewals: acknowledged keep-alives so far.
    """

    id: int
    ttl: int
    deadline: float = math.inf
    renewals: int = 0


@final
class EtcdClient:
    """A client of an etcd v3 cluster; get one with :func:`open_etcd_client`.

    Keys and values are ``bytes`` (a ``str`` argument is encoded as UTF-8).
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        endpoints: tuple[str, ...],
        *,
        timeout: float,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self._http = http
        self._endpoints = endpoints
        self._preferred = 0
        self.timeout = timeout
        self._username = username
        self._password = password
        self._token: str | None = None

    @property
    def endpoints(self) -> tuple[str, ...]:
        """The endpoints, as normalised URLs."""
        return self._endpoints

    # -- transport ---------------------------------------------------------------------------

    async def _call(
        self,
        path: str,
        body: Mapping[str, Any],
        *,
        idempotent: bool,
        decode: Callable[[Mapping[str, Any]], T] = _identity,  # type: ignore[assignment]
    ) -> T:
        """POST ``body`` to ``path`` with failover; returns ``decode`` of the JSON object.

        A malformed answer (``decode`` raising :class:`EtcdProtocolError`) is
        reported with the endpoint and the call that produced it."""
        limit = self.timeout
        tried: list[str] = []
        reauthenticated = False
        with trio.move_on_after(limit) as scope:
            n = len(self._endpoints)
            attempt = 0
            while True:
                index = (self._preferred + attempt) % n
                endpoint = self._endpoints[index]
                if attempt and attempt % n == 0:
                    # every endpoint failed once: back off a little before the next round
                    await trio.sleep(min(0.05 * (attempt // n), 0.5))
                attempt += 1
                tried.append(endpoint)
                if self._username is not None and self._token is None:
                    await self._authenticate(endpoint)
                headers = {"Authorization": self._token} if self._token else None
                try:
                    response = await self._http.post(
                        endpoint + path, content=json.dumps(body), headers=headers
                    )
                except httpx.ConnectError:
                    continue  # never sent: safe to try the next endpoint, for any request
                except httpx.TransportError as exc:
                    if idempotent:
                        continue
                    raise EtcdUnavailableError(
                        f"no answer ({type(exc).__name__}); the request may have been applied",
                        endpoint=endpoint,
                        call=path,
                        outcome_unknown=True,
                    ) from exc
                obj = self._decode(response, endpoint, path)
                if "error" not in obj and "code" not in obj:
                    self._preferred = index
                    try:
                        return decode(obj)
                    except EtcdProtocolError as exc:
                        raise EtcdProtocolError(str(exc), endpoint=endpoint, call=path) from None
                code = as_int(obj, "code")
                message = str(obj.get("message") or obj.get("error") or "")
                if code == GRPC_UNAVAILABLE:
                    if idempotent:
                        continue
                    raise EtcdUnavailableError(
                        f"etcd is unavailable: {message}; the request may have been applied",
                        endpoint=endpoint,
                        call=path,
                        outcome_unknown=True,
                    )
                if code == GRPC_UNAUTHENTICATED and self._username is not None:
                    if not reauthenticated:  # the token expired: get a new one, once per call
                        reauthenticated = True
                        self._token = None
                        attempt -= 1
                        continue
                raise self._error(code, message, body, endpoint, path)
        assert scope.cancelled_caught
        names = ", ".join(dict.fromkeys(tried))
        raise EtcdUnavailableError(
            f"no etcd endpoint answered within {limit:g} s (tried {names})",
            call=path,
            outcome_unknown=not idempotent,
        )

    def _decode(self, response: httpx.Response, endpoint: str, path: str) -> Mapping[str, Any]:
        if len(response.content) > MAX_RESPONSE_BYTES:
            raise EtcdProtocolError(
                f"answer of {len(response.content)} bytes exceeds the limit",
                endpoint=endpoint,
                call=path,
            )
        try:
            obj = json.loads(response.content)
        except (ValueError, UnicodeDecodeError):
            raise EtcdProtocolError(
                f"HTTP {response.status_code} answer is not JSON: {response.content[:80]!r}",
                endpoint=endpoint,
                call=path,
            ) from None
        if not isinstance(obj, dict):
            raise EtcdProtocolError(
                f"answer is not a JSON object: {response.content[:80]!r}",
                endpoint=endpoint,
                call=path,
            )
        return obj

    def _error(
        self, code: int, message: str, body: Mapping[str, Any], endpoint: str, path: str
    ) -> EtcdError:
        if code in (GRPC_UNAUTHENTICATED, GRPC_PERMISSION_DENIED):
            return EtcdAuthError(f"{message} (code {code})", endpoint=endpoint, call=path)
        if code == GRPC_OUT_OF_RANGE and "compacted" in message:
            return EtcdCompactedError(as_int(body, "revision"), 0, endpoint=endpoint, call=path)
        if code == GRPC_NOT_FOUND and "lease" in message:
            lease_id = as_int(body, "ID") or as_int(body, "lease")
            return EtcdLeaseNotFoundError(lease_id, endpoint=endpoint, call=path)
        if code in (GRPC_INVALID_ARGUMENT, GRPC_FAILED_PRECONDITION, GRPC_NOT_FOUND):
            return EtcdRequestError(message, code=code, endpoint=endpoint, call=path)
        return EtcdRequestError(f"{message} (code {code})", code=code, endpoint=endpoint, call=path)

    async def _authenticate(self, endpoint: str) -> None:
        path = "/v3/auth/authenticate"
        try:
            response = await self._http.post(
                endpoint + path,
                content=json.dumps({"name": self._username, "password": self._password}),
            )
        except httpx.TransportError:
            return  # the call itself will fail over; authentication is retried there
        obj = self._decode(response, endpoint, path)
        token = obj.get("token")
        if not isinstance(token, str) or not token:
            message = str(obj.get("message") or obj.get("error") or "no token in the answer")
            raise EtcdAuthError(
                f"authentication as {self._username!r} failed: {message}",
                endpoint=endpoint,
                call=path,
            )
        self._token = token

    # -- key-value ---------------------------------------------------------------------------

    async def get(
        self, key: Bytesish, *, revision: int = 0, serializable: bool = False
    ) -> KeyValue | None:
        """Read one key.

        Args:
            key: the key.
            revision: read the key as of this revision (0: the latest).
            serializable: serve from the local member without a quorum round
                (faster, may be stale); the default is linearizable.

        Returns:
            The key, or ``None`` if it does not exist.

        Raises:
            EtcdCompactedError: ``revision`` has been compacted away.
            EtcdUnavailableError: no endpoint answered within the timeout.
        """
        result = await self.range(key, revision=revision, serializable=serializable)
        return result.kvs[0] if result.kvs else None

    async def range(
        self,
        key: Bytesish,
        range_end: Bytesish | None = None,
        *,
        prefix: bool = False,
        limit: int = 0,
        revision: int = 0,
        serializable: bool = False,
        keys_only: bool = False,
        count_only: bool = False,
        sort: tuple[SortTarget, SortOrder] | None = None,
        max_create_revision: int = 0,
    ) -> RangeResult:
        """Read the keys in ``[key, range_end)``, or every key starting with ``key`` (``prefix``).

        Args:
            limit: at most this many keys (0: no limit); ``RangeResult.more`` says if any remain.
            revision, serializable: as for :meth:`get`.
            keys_only: leave values out. count_only: return only the count.
            sort: order the keys by ``(target, order)``, e.g. ``("CREATE", "DESCEND")``
                (default: by key, ascending).
            max_create_revision: only keys created at or before this revision (0: any).

        Raises:
            ValueError: ``prefix`` together with ``range_end``, or a negative limit/revision.
            EtcdCompactedError, EtcdUnavailableError: as for :meth:`get`.
        """
        if prefix and range_end is not None:
            raise ValueError("give either prefix=True or range_end, not both")
        if limit < 0 or revision < 0:
            raise ValueError(f"limit and revision must be >= 0, got {limit} and {revision}")
        k = to_bytes(key, "key")
        body: dict[str, Any] = {"key": b64(k)}
        end = prefix_end(k) if prefix else (to_bytes(range_end, "range_end") if range_end else b"")
        if end:
            body["range_end"] = b64(end)
        if limit:
            body["limit"] = str(limit)
        if revision:
            body["revision"] = str(revision)
        if serializable:
            body["serializable"] = True
        if keys_only:
            body["keys_only"] = True
        if count_only:
            body["count_only"] = True
        if sort is not None:
            body["sort_target"], body["sort_order"] = sort
        if max_create_revision:
            body["max_create_revision"] = str(max_create_revision)
        return await self._call("/v3/kv/range", body, idempotent=True, decode=decode_range)

    async def put(
        self, key: Bytesish, value: Bytesish, *, lease: int = 0, prev_kv: bool = False
    ) -> PutResult:
        """Write one key.

        Args:
            lease: attach the key to this lease (it is deleted when the lease ends).
            prev_kv: return the key as it was before.

        Raises:
            EtcdLeaseNotFoundError: ``lease`` does not exist.
            EtcdUnavailableError: no answer in time (``outcome_unknown`` says whether
                the write may have been applied).
        """
        body: dict[str, Any] = {
            "key": b64(to_bytes(key, "key")),
            "value": b64(to_bytes(value, "value")),
        }
        if lease:
            body["lease"] = str(lease)
        if prev_kv:
            body["prev_kv"] = True
        return await self._call("/v3/kv/put", body, idempotent=False, decode=_decode_put)

    async def delete(
        self, key: Bytesish, *, prefix: bool = False, prev_kv: bool = False
    ) -> DeleteResult:
        """Delete one key, or every key starting with ``key`` (``prefix``).

        Raises:
            EtcdUnavailableError: as for :meth:`put`.
        """
        k = to_bytes(key, "key")
        body: dict[str, Any] = {"key": b64(k)}
        if prefix:
            body["range_end"] = b64(prefix_end(k))
        if prev_kv:
            body["prev_kv"] = True
        return await self._call("/v3/kv/deleterange", body, idempotent=False, decode=_decode_delete)

    async def txn(
        self,
        compare: Sequence[Compare],
        success: Sequence[Op] = (),
        failure: Sequence[Op] = (),
    ) -> TxnResult:
        """Run a transaction: if every comparison holds, ``success``, else ``failure``, atomically.

        Example (compare-and-swap)::

            r = await client.txn([Compare.value("k") == b"old"], [PutOp(b"k", b"new")])
            r.succeeded

        Raises:
            EtcdUnavailableError: as for :meth:`put`.
        """
        body = {
            "compare": [c.to_json() for c in compare],
            "success": [op.to_json() for op in success],
            "failure": [op.to_json() for op in failure],
        }
        return await self._call("/v3/kv/txn", body, idempotent=False, decode=decode_txn)

    async def compact(self, revision: int, *, physical: bool = False) -> None:
        """Discard the history before ``revision`` (watches and reads below it then fail).

        Raises:
            EtcdCompactedError: ``revision`` is already compacted.
            EtcdRequestError: ``revision`` is in the future.
        """
        body: dict[str, Any] = {"revision": str(revision)}
        if physical:
            body["physical"] = True
        await self._call("/v3/kv/compaction", body, idempotent=True)

    # -- leases ------------------------------------------------------------------------------

    async def grant_lease(self, ttl: int) -> EtcdLease:
        """Create a lease that expires ``ttl`` seconds after its last keep-alive.

        Raises:
            ValueError: ``ttl`` < 1 (etcd's ttls are whole seconds).
        """
        if isinstance(ttl, bool) or not isinstance(ttl, int):
            raise TypeError(f"ttl must be an int (seconds), got {ttl!r}")
        if ttl < 1:
            raise ValueError(f"ttl must be >= 1 second, got {ttl}")
        return await self._call(
            "/v3/lease/grant", {"TTL": str(ttl)}, idempotent=False, decode=_decode_grant
        )

    async def revoke_lease(self, lease_id: int) -> None:
        """End a lease now; every key attached to it is deleted.

        Raises:
            EtcdLeaseNotFoundError: the lease had already ended.
        """
        await self._call("/v3/lease/revoke", {"ID": str(lease_id)}, idempotent=True)

    async def keep_alive_once(self, lease_id: int) -> int:
        """Renew a lease once.

        Returns:
            The ttl (seconds) it was renewed for, counted from when etcd's leader got the request.

        Raises:
            EtcdLeaseNotFoundError: the lease has ended (expired or revoked).
        """
        path = "/v3/lease/keepalive"
        ttl = await self._call(path, {"ID": str(lease_id)}, idempotent=True, decode=_decode_ttl)
        if ttl <= 0:  # the gateway answers an unknown lease with no TTL field at all
            raise EtcdLeaseNotFoundError(lease_id, call=path)
        return ttl

    async def time_to_live(self, lease_id: int) -> int:
        """Seconds left on a lease.

        Raises:
            EtcdLeaseNotFoundError: the lease has ended.
        """
        ttl = await self._call(
            "/v3/lease/timetolive", {"ID": str(lease_id)}, idempotent=True, decode=_decode_ttl
        )
        if ttl < 0:
            raise EtcdLeaseNotFoundError(lease_id, call="/v3/lease/timetolive")
        return ttl

    @asynccontextmanager
    async def lease(
        self,
        ttl: int,
        *,
        margin: float | None = None,
        on_renew: Callable[[EtcdLease], None] | None = None,
    ) -> AsyncIterator[EtcdLease]:
        """Hold a lease for the duration of the block, keeping it alive in the background.

        The block runs in a cancel scope whose deadline is kept ``margin`` seconds
        before the moment the lease could expire: measured from when the last
        acknowledged keep-alive was *sent* (so network delay only shortens it),
        plus the ttl etcd granted. Each acknowledged keep-alive moves it. If the
        lease is found ended, or keep-alives are not acknowledged before that
        deadline, the block is cancelled and :class:`EtcdLeaseLostError` is raised
        from the ``async with``. On exit the lease is revoked (within the
        client's timeout; a failed revoke is logged — the lease then simply expires).

        Assumption: etcd's leader clock and this process's clock advance at the
        same rate over one ttl (etcd itself assumes this; a leader change only
        extends leases).

        Args:
            ttl: seconds, >= 1; etcd may grant more (see ``EtcdLease.ttl``).
            margin: seconds of slack before the possible expiry (default ``min(1, ttl/4)``).
            on_renew: called (synchronously, in the keep-alive task) after each
                acknowledged keep-alive, with the lease's new ``deadline``.

        Raises:
            EtcdLeaseLostError: the lease ended while the block ran.
            EtcdUnavailableError: the lease could not be granted.
        """
        if margin is None:
            margin = min(1.0, ttl / 4)
        if not (0 <= margin < ttl):
            raise ValueError(f"margin must be in [0, ttl), got {margin} for ttl {ttl}")
        sent = trio.current_time()
        granted = await self.grant_lease(ttl)
        granted.deadline = sent + granted.ttl - margin
        body = trio.CancelScope(deadline=granted.deadline)
        lost: list[str] = []
        body_error: BaseException | None = None
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._keep_alive, granted, margin, body, lost, on_renew)
                try:
                    with body:
                        yield granted
                except BaseException as exc:
                    body_error = exc
                    raise
                finally:
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # Only the block can raise here (the keep-alive task never does): give its
            # exception back as it raised it, as a plain ``async with`` would.
            raise collapse(group, prefer=body_error) from None
        finally:
            with trio.CancelScope(shield=True, deadline=trio.current_time() + self.timeout):
                try:
                    await self.revoke_lease(granted.id)
                except EtcdLeaseNotFoundError:
                    pass
                except EtcdError as exc:
                    log.warning("could not revoke etcd lease %d: %s", granted.id, exc)
        if body.cancelled_caught:
            reason = lost[0] if lost else "not renewed before the safe deadline"
            raise EtcdLeaseLostError(granted.id, reason)

    async def _keep_alive(
        self,
        lease: EtcdLease,
        margin: float,
        body: trio.CancelScope,
        lost: list[str],
        on_renew: Callable[[EtcdLease], None] | None,
    ) -> None:
        interval = max(lease.ttl / 3, 0.1)
        while True:
            await trio.sleep(interval)
            sent = trio.current_time()
            try:
                ttl = await self.keep_alive_once(lease.id)
            except EtcdLeaseNotFoundError:
                lost.append("etcd says the lease has ended")
                body.cancel()
                return
            except EtcdError as exc:
                # Unreachable for now: keep trying; the body's deadline stands.
                log.info("keep-alive of lease %d failed: %s", lease.id, exc)
                continue
            lease.renewals += 1
            lease.deadline = body.deadline = max(body.deadline, sent + ttl - margin)
            if on_renew is not None:
                on_renew(lease)

    # -- watch -------------------------------------------------------------------------------

    def watch(
        self,
        key: Bytesish,
        *,
        prefix: bool = False,
        start_revision: int = 0,
        prev_kv: bool = False,
        idle_reconnect: float = 30.0,
    ) -> Watch:
        """Watch a key (or a prefix) for changes: ``async with client.watch(k) as events``.

        Events arrive in revision order, each exactly once, across reconnects
        and endpoint failover: after a broken stream the watch resumes from the
        revision after the last event it delivered. A silent stream is
        re-established after ``idle_reconnect`` seconds (a stopped etcd keeps
        TCP connections open), which costs nothing when nothing changed.

        Args:
            start_revision: deliver changes from this revision on (0: from now).
            prev_kv: also deliver each key's previous value.

        Raises (from the iteration):
            EtcdCompactedError: the revision to resume from has been compacted;
                re-read the state and start a new watch.
            EtcdUnavailableError: no endpoint could be reached within the client's timeout.
        """
        if start_revision < 0:
            raise ValueError(f"start_revision must be >= 0, got {start_revision}")
        if idle_reconnect <= 0:
            raise ValueError(f"idle_reconnect must be > 0, got {idle_reconnect}")
        k = to_bytes(key, "key")
        return Watch(
            self, k, prefix_end(k) if prefix else b"", start_revision, prev_kv, idle_reconnect
        )

    async def status(self, endpoint: str | None = None) -> Mapping[str, Any]:
        """A member's status (``/v3/maintenance/status``): version, leader, raft term, index."""
        if endpoint is None:
            return await self._call("/v3/maintenance/status", {}, idempotent=True)
        (url,) = parse_endpoints(endpoint)
        with trio.fail_after(self.timeout):
            response = await self._http.post(url + "/v3/maintenance/status", content="{}")
        return self._decode(response, url, "/v3/maintenance/status")


def _decode_put(obj: Mapping[str, Any]) -> PutResult:
    prev = decode_kv(obj["prev_kv"]) if "prev_kv" in obj else None
    return PutResult(revision=header_revision(obj), prev=prev)


def _decode_delete(obj: Mapping[str, Any]) -> DeleteResult:
    return DeleteResult(
        deleted=as_int(obj, "deleted"),
        revision=header_revision(obj),
        prev=tuple(decode_kv(kv) for kv in as_list(obj, "prev_kvs")),
    )


def _decode_grant(obj: Mapping[str, Any]) -> EtcdLease:
    return EtcdLease(id=as_int(obj, "ID"), ttl=as_int(obj, "TTL"))


def _decode_ttl(obj: Mapping[str, Any]) -> int:
    """``TTL`` of a keepalive (wrapped in ``result``, a streaming call) or timetolive answer."""
    return as_int(as_dict(obj.get("result", obj), "result"), "TTL")


@final
class Watch:
    """An ordered, resumable stream of :class:`WatchEvent` (see :meth:`EtcdClient.watch`).

    Use as ``async with client.watch(...) as events: async for event in events``.
    Iterating is a checkpoint; cancelling it closes the stream, and a new
    watch from ``next_revision`` resumes where it stopped.
    """

    def __init__(
        self,
        client: EtcdClient,
        key: bytes,
        range_end: bytes,
        start_revision: int,
        prev_kv: bool,
        idle_reconnect: float,
    ) -> None:
        self._client = client
        self._key = key
        self._range_end = range_end
        self._prev_kv = prev_kv
        self._idle = idle_reconnect
        self.next_revision = start_revision
        """The revision the next event will have at least (0 before the stream started)."""
        self._response: httpx.Response | None = None
        self._lines: AsyncIterator[str] | None = None
        self._pending: list[WatchEvent] = []
        self._closed = False
        self.reconnects = 0
        """How many times the stream was re-established."""

    async def __aenter__(self) -> Watch:
        if not self.next_revision:
            # "from now" means from entering: pin the revision, so a change made right
            # after entering is delivered even before the stream is opened.
            now = await self._client.range(self._key, count_only=True)
            self.next_revision = now.revision + 1
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the stream (idempotent)."""
        self._closed = True
        await self._drop()

    async def _drop(self) -> None:
        response, lines = self._response, self._lines
        self._response = self._lines = None
        if response is None:
            return
        with trio.CancelScope(shield=True, deadline=trio.current_time() + 1):
            await response.aclose()
            if lines is not None:
                # Run httpx's nested line/text/byte generators to their end on the closed
                # stream, so none is left half-consumed for the garbage collector.
                with contextlib.suppress(StopAsyncIteration, httpx.HTTPError, httpx.StreamError):
                    await lines.__anext__()

    def __aiter__(self) -> Watch:
        return self

    async def __anext__(self) -> WatchEvent:
        if self._closed:
            raise StopAsyncIteration
        while not self._pending:
            await self._fill()
        event = self._pending.pop(0)
        self.next_revision = event.revision + 1
        return event

    async def _open(self) -> None:
        client = self._client
        body: dict[str, Any] = {"key": b64(self._key)}
        if self._range_end:
            body["range_end"] = b64(self._range_end)
        if self.next_revision:
            body["start_revision"] = str(self.next_revision)
        if self._prev_kv:
            body["prev_kv"] = True
        payload = json.dumps({"create_request": body})
        deadline = trio.current_time() + client.timeout
        n = len(client.endpoints)
        attempt = 0
        while trio.current_time() < deadline:
            endpoint = client.endpoints[(client._preferred + attempt) % n]
            attempt += 1
            headers = {"Authorization": client._token} if client._token else None
            request = client._http.build_request(
                "POST",
                endpoint + "/v3/watch",
                content=payload,
                headers=headers,
                # the stream is silent while nothing changes: only _fill's idle timer bounds reads
                timeout=httpx.Timeout(client.timeout, read=None),
            )
            try:
                with trio.fail_after(max(deadline - trio.current_time(), 0.001)):
                    response = await client._http.send(request, stream=True)
            except (httpx.TransportError, trio.TooSlowError):
                if attempt % n == 0:
                    await trio.sleep(min(0.05 * attempt / n, 0.5))
                continue
            self._response = response
            self._lines = response.aiter_lines().__aiter__()
            self._endpoint = endpoint
            return
        raise EtcdUnavailableError(
            f"could not open a watch on any endpoint within {client.timeout:g} s",
            call="/v3/watch",
        )

    async def _fill(self) -> None:
        if self._lines is None:
            await self._open()
        assert self._lines is not None
        line: str | None = None
        with trio.move_on_after(self._idle):
            try:
                line = await self._lines.__anext__()
            except (StopAsyncIteration, httpx.TransportError):
                line = None
        if line is None:  # idle, ended or broken: resume from next_revision on a fresh stream
            await self._drop()
            self.reconnects += 1
            return
        if not line.strip():
            return
        endpoint = getattr(self, "_endpoint", "")
        try:
            obj = json.loads(line)
        except ValueError:
            raise EtcdProtocolError(
                f"watch line is not JSON: {line[:80]!r}", endpoint=endpoint, call="/v3/watch"
            ) from None
        if not isinstance(obj, dict):
            raise EtcdProtocolError(
                f"watch line is not an object: {line[:80]!r}", endpoint=endpoint, call="/v3/watch"
            )
        if "error" in obj:
            err = as_dict(obj["error"], "error") if isinstance(obj["error"], dict) else obj
            code = as_int(err, "code") if "code" in err else 0
            message = str(err.get("message", err.get("error", "")))
            await self._drop()
            if code in (GRPC_UNAVAILABLE, 0):
                self.reconnects += 1
                return
            raise EtcdRequestError(message, code=code, endpoint=endpoint, call="/v3/watch")
        result = as_dict(obj.get("result", {}), "result")
        compact = as_int(result, "compact_revision")
        if result.get("canceled"):
            await self._drop()
            if compact:
                raise EtcdCompactedError(
                    self.next_revision, compact, endpoint=endpoint, call="/v3/watch"
                )
            reason = str(result.get("cancel_reason", "watch canceled by etcd"))
            raise EtcdRequestError(reason, code=0, endpoint=endpoint, call="/v3/watch")
        if result.get("created") and not self.next_revision:
            self.next_revision = header_revision(result) + 1
        for raw in as_list(result, "events"):
            event = decode_event(raw)
            if event.revision >= self.next_revision:
                self._pending.append(event)


@asynccontextmanager
async def open_etcd_client(
    endpoints: str | Sequence[str],
    *,
    timeout: float = 5.0,  # noqa: ASYNC109 - the client's per-call timeout, not this call's
    username: str | None = None,
    password: str | None = None,
    ca_file: str | None = None,
    cert_file: str | None = None,
    key_file: str | None = None,
) -> AsyncIterator[EtcdClient]:
    """Open a client of an etcd cluster.

    Args:
        endpoints: ``"HOST:PORT,HOST:PORT"``, URLs (``http://``, ``https://``,
            ``etcd://``, ``etcds://``), or a list of them.
        timeout: seconds a call may take in total, failover included.
        username, password: etcd user authentication (both or neither).
        ca_file: CA bundle to verify ``https`` endpoints; cert_file/key_file: a
            client certificate for etcd's ``--client-cert-auth``.

    No task is started and no connection is made until the first call.

    Raises:
        ValueError: a malformed endpoint or timeout, or half of the credentials.
    """
    urls = parse_endpoints(endpoints)
    if not (isinstance(timeout, int | float) and math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
    if (username is None) != (password is None):
        raise ValueError("give both username and password, or neither")
    verify: ssl.SSLContext | bool = True
    if ca_file or cert_file:
        verify = ssl.create_default_context(cafile=ca_file)
        if cert_file:
            verify.load_cert_chain(cert_file, key_file)
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
    async with httpx.AsyncClient(
        timeout=httpx.Timeout(timeout), verify=verify, limits=limits, trust_env=False
    ) as http:
        yield EtcdClient(http, urls, timeout=timeout, username=username, password=password)
