"""The examples in docs/etcd.md run as written against a real etcd (marker ``etcd``)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from trio_foundation.etcd import open_etcd_client, open_etcd_election
from trio_foundation.etcd.testing import EtcdCluster

pytestmark = pytest.mark.etcd

DOC = Path(__file__).resolve().parent.parent / "docs" / "etcd.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    with EtcdCluster.start(tmp_path_factory.mktemp("etcd")) as cluster:
        yield cluster


async def test_the_client_example_runs(etcd: EtcdCluster) -> None:
    namespace: dict[str, object] = {}
    exec(compile(BLOCKS[0], str(DOC), "exec"), namespace)
    await namespace["main"](etcd.endpoints[0])  # type: ignore[operator]


async def test_the_snippets_run(etcd: EtcdCluster) -> None:
    """The watch, lease, lock and election snippets, each run inside an open client."""
    writes: list[tuple[int, bytes]] = []

    class Resource:
        def write(self, token: int, data: bytes) -> None:
            writes.append((token, data))

    async with open_etcd_client(etcd.endpoints[0]) as etcd_client:
        rev = (await etcd_client.put("jobs/1", "x")).revision
        handled: list[object] = []

        def handle(event: object) -> None:
            handled.append(event)

        namespace: dict[str, object] = {
            "etcd": etcd_client,
            "endpoint": etcd.endpoints[0],
            "open_etcd_client": open_etcd_client,
            "open_etcd_election": open_etcd_election,
            "rev": rev,
            "handle": handle,
            "resource": Resource(),
            "data": b"d",
            "trio": trio,
        }
        for block in BLOCKS[1:]:
            # each snippet becomes the body of a coroutine; a watch stops at its first event
            body = block.replace("handle(event)", "handle(event); break")
            src = "async def _snippet():\n" + "".join(f"    {line}\n" for line in body.splitlines())
            exec(compile(src, str(DOC), "exec"), namespace)
            with trio.fail_after(20):
                await namespace["_snippet"]()  # type: ignore[operator]
    assert len(handled) == 1 and len(writes) == 1
    assert writes[0][0] > rev
