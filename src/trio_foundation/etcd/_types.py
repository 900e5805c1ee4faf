"""Values exchanged with etcd, and their JSON form on the v3 gateway.

The gateway speaks protobuf's JSON mapping: ``bytes`` fields are base64, 64-bit
integers are strings, and fields equal to their zero value (``false``, ``0``,
empty) are omitted. :func:`decode_kv` and friends turn that back into typed
values and raise :class:`EtcdProtocolError` (never ``KeyError``) when a field
has the wrong shape.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any, Literal, final

import attrs

from ..coordination.kv import KeyValue, WatchEvent, to_bytes
from ._errors import EtcdProtocolError

__all__ = [
    "Compare",
    "DeleteOp",
    "DeleteResult",
    "GetOp",
    "KeyValue",
    "Op",
    "PutOp",
    "PutResult",
    "RangeResult",
    "TxnResult",
    "WatchEvent",
    "prefix_end",
]

Bytesish = bytes | str


def b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def unb64(value: object, field: str) -> bytes:
    if not isinstance(value, str):
        raise EtcdProtocolError(f"field {field!r} is not a base64 string: {value!r:.80}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise EtcdProtocolError(f"field {field!r} is not valid base64: {value!r:.80}") from None


def as_int(obj: Mapping[str, Any], field: str) -> int:
    """An int64 field: a decimal string (or a JSON number); absent means 0."""
    value = obj.get(field, 0)
    if isinstance(value, bool):
        raise EtcdProtocolError(f"field {field!r} is not an integer: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    raise EtcdProtocolError(f"field {field!r} is not an integer: {value!r:.80}")


def as_dict(value: object, field: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise EtcdProtocolError(f"field {field!r} is not an object: {value!r:.80}")
    return value


def as_list(obj: Mapping[str, Any], field: str) -> list[Any]:
    value = obj.get(field, [])
    if not isinstance(value, list):
        raise EtcdProtocolError(f"field {field!r} is not a list: {value!r:.80}")
    return value


def prefix_end(prefix: bytes) -> bytes:
    """The ``range_end`` that selects every key starting with ``prefix`` (etcd's rule:
    the prefix with its last byte below 0xff incremented; ``b"\\0"`` means "to the end")."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"


def decode_kv(obj: object) -> KeyValue:
    kv = as_dict(obj, "kv")
    return KeyValue(
        key=unb64(kv.get("key", ""), "key"),
        value=unb64(kv.get("value", ""), "value"),
        create_revision=as_int(kv, "create_revision"),
        mod_revision=as_int(kv, "mod_revision"),
        version=as_int(kv, "version"),
        lease=as_int(kv, "lease"),
    )


def header_revision(obj: Mapping[str, Any]) -> int:
    return as_int(as_dict(obj.get("header", {}), "header"), "revision")


@final
@attrs.frozen
class RangeResult:
    """The answer to a range (get) request.

    Attributes:
        kvs: the keys found, in key order.
        count: how many keys the range holds (may exceed ``len(kvs)`` with a limit).
        more: whether keys beyond ``limit`` remain.
        revision: the store's revision when the range was served.
    """

    kvs: tuple[KeyValue, ...]
    count: int
    more: bool
    revision: int


def decode_range(obj: Mapping[str, Any]) -> RangeResult:
    return RangeResult(
        kvs=tuple(decode_kv(kv) for kv in as_list(obj, "kvs")),
        count=as_int(obj, "count"),
        more=bool(obj.get("more", False)),
        revision=header_revision(obj),
    )


@final
@attrs.frozen
class PutResult:
    """The answer to a put: the new revision, and the previous key if asked for."""

    revision: int
    prev: KeyValue | None = None


@final
@attrs.frozen
class DeleteResult:
    """The answer to a delete: how many keys went, the new revision, the previous keys if asked."""

    deleted: int
    revision: int
    prev: tuple[KeyValue, ...] = ()


CompareTarget = Literal["VALUE", "VERSION", "CREATE", "MOD", "LEASE"]
CompareResult = Literal["EQUAL", "GREATER", "LESS", "NOT_EQUAL"]

_TARGET_FIELD = {
    "VALUE": "value",
    "VERSION": "version",
    "CREATE": "create_revision",
    "MOD": "mod_revision",
    "LEASE": "lease",
}


@final
@attrs.frozen
class Compare:
    """One condition of a transaction, e.g. ``Compare.mod_revision("k") == 0``
    (the key does not exist) or ``Compare.value("k") == b"old"``.

    Build it with a classmethod and a comparison operator (``==``, ``!=``,
    ``<``, ``>``); ``target`` and ``result`` are etcd's names.
    """

    key: bytes
    target: CompareTarget
    result: CompareResult = "EQUAL"
    operand: bytes | int = 0

    @classmethod
    def value(cls, key: Bytesish) -> _CompareBuilder:
        """Compare the key's value (bytes or str)."""
        return _CompareBuilder(to_bytes(key, "key"), "VALUE")

    @classmethod
    def version(cls, key: Bytesish) -> _CompareBuilder:
        """Compare the key's version (0 when absent)."""
        return _CompareBuilder(to_bytes(key, "key"), "VERSION")

    @classmethod
    def create_revision(cls, key: Bytesish) -> _CompareBuilder:
        """Compare the key's create revision (0 when absent)."""
        return _CompareBuilder(to_bytes(key, "key"), "CREATE")

    @classmethod
    def mod_revision(cls, key: Bytesish) -> _CompareBuilder:
        """Compare the key's mod revision (0 when absent)."""
        return _CompareBuilder(to_bytes(key, "key"), "MOD")

    @classmethod
    def lease(cls, key: Bytesish) -> _CompareBuilder:
        """Compare the id of the lease the key is attached to."""
        return _CompareBuilder(to_bytes(key, "key"), "LEASE")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": b64(self.key), "target": self.target, "result": self.result}
        field = _TARGET_FIELD[self.target]
        if self.target == "VALUE":
            if not isinstance(self.operand, bytes):
                raise TypeError("a VALUE comparison needs a bytes or str operand")
            out[field] = b64(self.operand)
        else:
            if isinstance(self.operand, bytes):
                raise TypeError(f"a {self.target} comparison needs an int operand")
            out[field] = str(self.operand)
        return out


@final
@attrs.frozen
class _CompareBuilder:
    key: bytes
    target: CompareTarget

    def _make(self, result: CompareResult, operand: object) -> Compare:
        if self.target == "VALUE":
            return Compare(self.key, self.target, result, to_bytes(operand, "operand"))  # type: ignore[arg-type]
        if isinstance(operand, bool) or not isinstance(operand, int):
            raise TypeError(f"a {self.target} comparison needs an int, got {operand!r}")
        return Compare(self.key, self.target, result, operand)

    def __eq__(self, other: object) -> Compare:  # type: ignore[override]
        return self._make("EQUAL", other)

    def __ne__(self, other: object) -> Compare:  # type: ignore[override]
        return self._make("NOT_EQUAL", other)

    def __lt__(self, other: object) -> Compare:
        return self._make("LESS", other)

    def __gt__(self, other: object) -> Compare:
        return self._make("GREATER", other)

    __hash__ = None  # type: ignore[assignment]


@final
@attrs.frozen
class GetOp:
    """A range request inside a transaction."""

    key: bytes
    range_end: bytes = b""

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"key": b64(self.key)}
        if self.range_end:
            body["range_end"] = b64(self.range_end)
        return {"request_range": body}


@final
@attrs.frozen
class PutOp:
    """A put inside a transaction."""

    key: bytes
    value: bytes
    lease: int = 0

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"key": b64(self.key), "value": b64(self.value)}
        if self.lease:
            body["lease"] = str(self.lease)
        return {"request_put": body}


@final
@attrs.frozen
class DeleteOp:
    """A delete inside a transaction."""

    key: bytes
    range_end: bytes = b""

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"key": b64(self.key)}
        if self.range_end:
            body["range_end"] = b64(self.range_end)
        return {"request_delete_range": body}


Op = GetOp | PutOp | DeleteOp

TxnResponse = RangeResult | PutResult | DeleteResult


@final
@attrs.frozen
class TxnResult:
    """The answer to a transaction.

    Attributes:
        succeeded: whether every comparison held (then ``success`` ran, else ``failure``).
        revision: the store's revision after the transaction.
        responses: one result per operation of the branch that ran, in order.
    """

    succeeded: bool
    revision: int
    responses: tuple[TxnResponse, ...]


def decode_txn(obj: Mapping[str, Any]) -> TxnResult:
    responses: list[TxnResponse] = []
    for item in as_list(obj, "responses"):
        resp = as_dict(item, "responses[]")
        if "response_range" in resp:
            responses.append(decode_range(as_dict(resp["response_range"], "response_range")))
        elif "response_put" in resp:
            put = as_dict(resp["response_put"], "response_put")
            prev = decode_kv(put["prev_kv"]) if "prev_kv" in put else None
            responses.append(PutResult(revision=header_revision(put), prev=prev))
        elif "response_delete_range" in resp:
            dele = as_dict(resp["response_delete_range"], "response_delete_range")
            responses.append(
                DeleteResult(
                    deleted=as_int(dele, "deleted"),
                    revision=header_revision(dele),
                    prev=tuple(decode_kv(kv) for kv in as_list(dele, "prev_kvs")),
                )
            )
        else:
            raise EtcdProtocolError(f"unknown transaction response: {resp!r:.80}")
    return TxnResult(
        succeeded=bool(obj.get("succeeded", False)),
        revision=header_revision(obj),
        responses=tuple(responses),
    )


def decode_event(obj: object) -> WatchEvent:
    ev = as_dict(obj, "events[]")
    kind = ev.get("type", "PUT")
    if kind not in ("PUT", "DELETE"):
        raise EtcdProtocolError(f"unknown watch event type {kind!r:.40}")
    prev = decode_kv(ev["prev_kv"]) if "prev_kv" in ev else None
    return WatchEvent(type=kind, kv=decode_kv(ev.get("kv", {})), prev=prev)
