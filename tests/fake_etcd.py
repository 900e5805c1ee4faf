"""An in-process stand-in for etcd's v3 gateway (kv and leases), served to httpx
through ``httpx.MockTransport``: no sockets, so it runs under ``MockClock`` and
the cancellation-injection harness. It implements the subset the client uses,
with etcd's JSON shapes (base64 keys, int64 as strings, zero fields omitted)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import httpx
import trio

from trio_foundation.etcd import EtcdClient


def _b(s: str) -> bytes:
    return base64.b64decode(s)


def _s(b: bytes) -> str:
    return base64.b64encode(b).decode()


class FakeEtcd:
    """kv + leases with etcd's semantics for the calls the client makes.

    Lease expiry is checked against ``trio.current_time()`` (virtual time under MockClock).
    """

    def __init__(self) -> None:
        self.revision = 1
        self.kv: dict[bytes, dict[str, Any]] = {}
        self.leases: dict[int, tuple[int, float]] = {}  # id -> (ttl, expires at)
        self.next_lease = 1000
        self.calls: list[str] = []
        self.fail_next: list[Callable[[httpx.Request], httpx.Response | None]] = []
        self.latency = 0.01  # seconds for a round trip, virtual under MockClock
        self.delivered_grants: set[int] = set()  # leases whose id reached the client

    def expire(self) -> None:
        now = trio.current_time()
        for lid, (_, at) in list(self.leases.items()):
            if at <= now:
                self._drop_lease(lid)

    def _drop_lease(self, lid: int) -> None:
        del self.leases[lid]
        for k in [k for k, v in self.kv.items() if v["lease"] == lid]:
            del self.kv[k]
            self.revision += 1

    def _header(self) -> dict[str, Any]:
        return {"header": {"revision": str(self.revision)}}

    def _kv_json(self, k: bytes) -> dict[str, Any]:
        v = self.kv[k]
        out = {
            "key": _s(k),
            "value": _s(v["value"]),
            "create_revision": str(v["create"]),
            "mod_revision": str(v["mod"]),
            "version": str(v["version"]),
        }
        if v["lease"]:
            out["lease"] = str(v["lease"])
        return out

    async def handle(self, request: httpx.Request) -> httpx.Response:
        """Serve one request between two network delays, so a cancelled call may have
        been applied (cancelled on the way back) or not (cancelled on the way there)."""
        await trio.sleep(self.latency / 2)
        response = self.serve(request)
        await trio.sleep(self.latency / 2)
        if request.url.path == "/v3/lease/grant" and response.status_code == 200:
            self.delivered_grants.add(int(json.loads(response.content)["ID"]))
        return response

    def serve(self, request: httpx.Request) -> httpx.Response:
        self.expire()
        path = request.url.path
        self.calls.append(path)
        if self.fail_next:
            forced = self.fail_next.pop(0)(request)
            if forced is not None:
                return forced
        body = json.loads(request.content or b"{}")
        if path == "/v3/kv/put":
            lease = int(body.get("lease", 0))
            if lease and lease not in self.leases:
                return httpx.Response(
                    200, json={"error": "etcdserver: requested lease not found", "code": 5,
                               "message": "etcdserver: requested lease not found"},
                )  # fmt: skip
            k = _b(body["key"])
            self.revision += 1
            old = self.kv.get(k)
            self.kv[k] = {
                "value": _b(body.get("value", "")),
                "create": old["create"] if old else self.revision,
                "mod": self.revision,
                "version": old["version"] + 1 if old else 1,
                "lease": lease,
            }
            return httpx.Response(200, json=self._header())
        if path == "/v3/kv/range":
            k = _b(body["key"])
            out = self._header()
            if k in self.kv:
                out["kvs"] = [self._kv_json(k)]
                out["count"] = "1"
            return httpx.Response(200, json=out)
        if path == "/v3/lease/grant":
            self.next_lease += 1
            ttl = int(body["TTL"])
            self.leases[self.next_lease] = (ttl, trio.current_time() + ttl)
            return httpx.Response(
                200, json={**self._header(), "ID": str(self.next_lease), "TTL": str(ttl)}
            )
        if path == "/v3/lease/keepalive":
            lid = int(body["ID"])
            result: dict[str, Any] = {**self._header(), "ID": str(lid)}
            if lid in self.leases:
                ttl = self.leases[lid][0]
                self.leases[lid] = (ttl, trio.current_time() + ttl)
                result["TTL"] = str(ttl)
            return httpx.Response(200, json={"result": result})
        if path == "/v3/lease/revoke":
            lid = int(body["ID"])
            if lid not in self.leases:
                return httpx.Response(
                    200, json={"error": "etcdserver: requested lease not found", "code": 5,
                               "message": "etcdserver: requested lease not found"},
                )  # fmt: skip
            self._drop_lease(lid)
            return httpx.Response(200, json=self._header())
        return httpx.Response(404, text="404 page not found\n")


def fake_client(
    fake: FakeEtcd, *, endpoints: tuple[str, ...] = ("http://fake:2379",), timeout: float = 2.0
) -> tuple[httpx.AsyncClient, EtcdClient]:
    http = httpx.AsyncClient(transport=httpx.MockTransport(fake.handle))
    return http, EtcdClient(http, endpoints, timeout=timeout)
