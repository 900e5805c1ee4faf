"""A lock holder in its own OS process, for chaos/test_etcd_lock.py.

``python etcd_lock_child.py ENDPOINTS PREFIX TTL WRITES [broken]``: acquire the lock
``x`` under ``PREFIX``, then ``WRITES`` times: print a write request under the
token and sleep 0.1 s; release. Each line on stdout is one JSON object:
``acquired`` (token, start, deadline), ``write`` (token, i, deadline, at), then
``released`` or ``lost``. Times are ``time.monotonic()`` seconds, which every
process on the machine shares (trio's clock carries a per-run offset); a
``deadline`` is the lease's deadline as this process knows it at that line.
With ``broken``, keep-alives never cancel the body (the broken variant the
chaos test must catch).
"""

from __future__ import annotations

import json
import math
import sys
import time

import trio

from trio_foundation import LeaseLostError
from trio_foundation.etcd import EtcdClient, EtcdError, EtcdLock, open_etcd_client


async def _broken_keep_alive(self, lease, margin, body, lost, on_renew) -> None:  # type: ignore[no-untyped-def]
    """The broken variant: the body runs on whatever happens to the lease."""
    body.deadline = math.inf
    while True:
        await trio.sleep(lease.ttl / 3)
        try:
            await self.keep_alive_once(lease.id)
        except EtcdError:
            continue


def say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def mono(trio_time: float) -> float:
    return trio_time - trio.current_time() + time.monotonic()


async def main(endpoints: str, prefix: str, ttl: float, writes: int) -> None:
    async with open_etcd_client(endpoints, timeout=2.0) as client:
        lock = EtcdLock(client, prefix=prefix, margin=0.5)
        try:
            async with lock.acquire(ttl=ttl, name="x") as lease:
                say(
                    event="acquired",
                    token=lease.token,
                    start=time.monotonic(),
                    deadline=mono(lease.deadline),
                )
                for i in range(writes):
                    say(
                        event="write",
                        token=lease.token,
                        i=i,
                        deadline=mono(lease.deadline),
                        at=time.monotonic(),
                    )
                    await trio.sleep(0.1)
        except LeaseLostError as exc:
            say(event="lost", reason=str(exc), at=time.monotonic())
        else:
            say(event="released", at=time.monotonic())


if __name__ == "__main__":
    if sys.argv[5:] == ["broken"]:
        EtcdClient._keep_alive = _broken_keep_alive  # type: ignore[method-assign]
    trio.run(main, sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]))
