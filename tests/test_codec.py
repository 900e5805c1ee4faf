"""The wire codec: schemas, framing, checks, and the errors a misbehaving peer gets."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import attrs
import msgspec
import pytest

from trio_foundation import ProtocolError
from trio_foundation.protocols import lease_lock
from trio_foundation.runtime.auth import MacSeal, load_secret_file, proof, session_keys
from trio_foundation.runtime.codec import (
    Crc32Seal,
    FrameDecoder,
    RemoteProtocolError,
    WireMessage,
    WireProtocol,
    encode_frame,
)


class Acquire(WireMessage, frozen=True):
    req: tuple[int, int]
    ttl: float
    name: str = ""


class Granted(WireMessage, frozen=True):
    req: tuple[int, int]
    token: int


class Release(WireMessage, frozen=True):
    token: int


class Other(WireMessage, frozen=True):
    blob: bytes


PROTO = WireProtocol("test", 1, [Acquire, Granted, Release], max_frame=256)
MESSAGES = [Acquire((1, 2), 5.0, "db"), Granted((1, 2), 7), Release(7), Acquire((0, 0), 0.5)]


def frames(msgs: list[WireMessage], seal: Crc32Seal | MacSeal | None = None) -> bytes:
    s = seal if seal is not None else Crc32Seal()
    return b"".join(encode_frame(PROTO.encode(m), s) for m in msgs)


def drain(decoder: FrameDecoder) -> list[WireMessage]:
    out = []
    while (m := decoder.next_message()) is not None:
        out.append(m)
    return out


def test_messages_round_trip_fed_one_byte_at_a_time() -> None:
    data = frames(list(MESSAGES))
    decoder = FrameDecoder(PROTO, Crc32Seal())
    got: list[WireMessage] = []
    for i in range(len(data)):
        decoder.feed(data[i : i + 1])
        got.extend(drain(decoder))
    assert got == MESSAGES
    assert decoder.buffered == 0 and decoder.frames == len(MESSAGES)


def test_messages_round_trip_in_one_chunk() -> None:
    decoder = FrameDecoder(PROTO, Crc32Seal())
    decoder.feed(frames(list(MESSAGES)))
    assert drain(decoder) == MESSAGES


def test_protocol_declaration_is_checked() -> None:
    with pytest.raises(TypeError, match="must subclass WireMessage or be attrs classes"):
        WireProtocol("p", 1, [int])

    class Loose(msgspec.Struct, tag=True):
        x: int

    with pytest.raises(TypeError, match="must subclass WireMessage or be attrs classes"):
        WireProtocol("p", 1, [Loose])

    class Mutable(WireMessage, frozen=False):  # type: ignore[misc]
        x: int

    with pytest.raises(TypeError, match="Mutable must be frozen"):
        WireProtocol("p", 1, [Mutable])

    class Dup(WireMessage, tag="Release", frozen=True):
        x: int

    with pytest.raises(ValueError, match="share tag 'Release'"):
        WireProtocol("p", 1, [Release, Dup])
    with pytest.raises(ValueError, match="declares no message types"):
        WireProtocol("p", 1, [])
    with pytest.raises(ValueError, match="version must be an int >= 1, got 0"):
        WireProtocol("p", 0, [Release])
    with pytest.raises(ValueError, match="name must be a non-empty str"):
        WireProtocol("", 1, [Release])
    with pytest.raises(ValueError, match="max_frame must be an int > 0"):
        WireProtocol("p", 1, [Release], max_frame=0)


def test_encoding_an_undeclared_or_oversized_message_is_the_callers_error() -> None:
    with pytest.raises(TypeError, match="Other is not a message type of protocol 'test'"):
        PROTO.encode(Other(b""))
    with pytest.raises(ValueError, match="above the frame limit of 256"):
        PROTO.encode(Acquire((1, 1), 1.0, "x" * 300))


def reason_of(payload: bytes) -> str:
    with pytest.raises(RemoteProtocolError) as info:
        PROTO.decode(payload)
    assert isinstance(info.value, ProtocolError)
    return info.value.reason


def test_decode_names_the_reason() -> None:
    enc = msgspec.msgpack.encode
    assert reason_of(enc(["Other", b"x"])) == "unknown-type"
    assert reason_of(enc([99, 1])) == "unknown-type"
    assert reason_of(b"\xc1") == "undecodable"
    assert reason_of(b"") == "undecodable"
    assert reason_of(enc(["Release", "seven"])) == "undecodable"  # wrong field type
    assert reason_of(enc(["Release", 7, 8])) == "undecodable"  # extra field
    assert reason_of(enc(["Release"])) == "undecodable"  # missing field
    assert reason_of(enc({"type": "Release", "token": 7})) == "undecodable"
    assert reason_of(enc(["Release", 7]) + b"\x00") == "undecodable"  # trailing bytes
    with pytest.raises(RemoteProtocolError, match="unknown-type: protocol 'test' has no message"):
        PROTO.decode(enc(["Other", b"x"]))


def decoder_error(data: bytes, seal: Crc32Seal | MacSeal | None = None) -> RemoteProtocolError:
    decoder = FrameDecoder(PROTO, seal if seal is not None else Crc32Seal())
    decoder.feed(data)
    with pytest.raises(RemoteProtocolError) as info:
        drain(decoder)
    # the decoder is poisoned: the same error again, whatever comes next
    decoder.feed(frames([Release(1)]))
    with pytest.raises(RemoteProtocolError) as again:
        decoder.next_message()
    assert again.value is info.value
    return info.value


def test_a_huge_length_prefix_is_refused_before_its_body_arrives() -> None:
    err = decoder_error(struct.pack(">I", 0xFFFFFFFF))
    assert err.reason == "frame-too-large"
    assert "4294967295 bytes announced, the limit is 260" in str(err)
    # one byte over the limit: refused; at the limit: waits for the body
    assert decoder_error(struct.pack(">I", 261)).reason == "frame-too-large"
    decoder = FrameDecoder(PROTO, Crc32Seal())
    decoder.feed(struct.pack(">I", 260))
    assert decoder.next_message() is None


def test_a_frame_shorter_than_its_check_is_undecodable() -> None:
    assert decoder_error(struct.pack(">I", 3) + b"abc").reason == "undecodable"


def test_a_corrupted_frame_fails_its_check() -> None:
    data = bytearray(frames([Granted((1, 2), 7)]))
    data[6] ^= 0x01
    assert decoder_error(bytes(data)).reason == "bad-check"


def test_an_unknown_type_in_a_good_frame_is_reported_as_such() -> None:
    payload = msgspec.msgpack.encode(["Other", b"x"])
    assert decoder_error(encode_frame(payload, Crc32Seal())).reason == "unknown-type"


def test_hmac_seal_rejects_forgery_replay_and_reordering() -> None:
    key_a, key_b = session_keys(b"k" * 16, b"dialer-hello", b"listener-hello")
    assert key_a != key_b
    msgs: list[WireMessage] = [Release(1), Release(2), Release(3)]
    good = frames(msgs, MacSeal(key_a))
    decoder = FrameDecoder(PROTO, MacSeal(key_a))
    decoder.feed(good)
    assert drain(decoder) == msgs

    one = [encode_frame(PROTO.encode(m), MacSeal(key_a)) for m in msgs]  # each as frame 0
    # replay: frame 0 twice
    assert decoder_error(one[0] + one[0], MacSeal(key_a)).reason == "bad-check"
    # reordering: frame 1 sealed as #1 delivered first
    seal = MacSeal(key_a)
    f0, f1 = (encode_frame(PROTO.encode(m), seal) for m in msgs[:2])
    assert decoder_error(f1 + f0, MacSeal(key_a)).reason == "bad-check"
    # wrong key (other direction's key)
    assert decoder_error(good, MacSeal(key_b)).reason == "bad-check"
    # a message substituted by someone without the key (any 16-byte tag)
    payload = PROTO.encode(Release(99))
    forged = struct.pack(">I", len(payload) + 16) + payload + bytes(16)
    assert decoder_error(forged, MacSeal(key_a)).reason == "bad-check"


def test_proofs_are_bound_to_role_and_transcript() -> None:
    secret = b"s" * 16
    p = proof(secret, "dialer", b"h1", b"h2")
    assert p == proof(secret, "dialer", b"h1", b"h2")
    assert p != proof(secret, "listener", b"h1", b"h2")  # no reflection
    assert p != proof(secret, "dialer", b"h1", b"h3")  # no replay with another nonce
    assert p != proof(b"t" * 16, "dialer", b"h1", b"h2")
    # length-prefixed transcript: moving bytes between the hellos changes the proof
    assert proof(secret, "dialer", b"ab", b"c") != proof(secret, "dialer", b"a", b"bc")


def test_load_secret_file(tmp_path: Path) -> None:
    f = tmp_path / "secret"
    f.write_bytes(b"0123456789abcdef-more\n")
    f.chmod(0o600)
    assert load_secret_file(f) == b"0123456789abcdef-more"
    f.chmod(0o640)
    with pytest.raises(ValueError, match=r"accessible by group or others \(mode 0640\)"):
        load_secret_file(f)
    f.chmod(0o600)
    f.write_bytes(b"short\n")
    with pytest.raises(ValueError, match="secret has 5 bytes, at least 16 are needed"):
        load_secret_file(f)
    with pytest.raises(FileNotFoundError):
        load_secret_file(tmp_path / "missing")
    assert os.stat(f).st_mode & 0o777 == 0o600


# ----------------------------------------------------------------- attrs messages (a core's own)

LEASE_LOCK = WireProtocol(
    "lease-lock",
    1,
    [
        lease_lock.AcquireRequest,
        lease_lock.RenewRequest,
        lease_lock.ReleaseRequest,
        lease_lock.Granted,
        lease_lock.Renewed,
        lease_lock.Denied,
        lease_lock.WriteRequest,
        lease_lock.WriteAccepted,
        lease_lock.WriteRefused,
    ],
)


def test_a_cores_attrs_messages_travel_as_themselves() -> None:
    msgs = [
        lease_lock.AcquireRequest((1, 2), 5.0),
        lease_lock.RenewRequest((1, 3), 7, 5.0),
        lease_lock.ReleaseRequest(7),
        lease_lock.Granted((1, 2), 7, 5.0),
        lease_lock.Renewed((1, 3), 7, 5.0),
        lease_lock.Denied((1, 2), "held"),
        lease_lock.WriteRequest(7, {"k": [1, "v"]}),
        lease_lock.WriteAccepted(7),
        lease_lock.WriteRefused(6, 7),
    ]
    decoder = FrameDecoder(LEASE_LOCK, Crc32Seal())
    decoder.feed(b"".join(encode_frame(LEASE_LOCK.encode(m), Crc32Seal()) for m in msgs))
    got = drain(decoder)
    assert got == msgs and [type(m) for m in got] == [type(m) for m in msgs]
    enc = msgspec.msgpack.encode
    # the annotated field types are enforced: ReqId is tuple[int, int]
    for bad in (
        ["Granted", [1, 2, 3], 7, 5.0],
        ["Granted", [1, "2"], 7, 5.0],
        ["Granted", [1, 2], 7],
    ):
        with pytest.raises(RemoteProtocolError, match="undecodable"):
            LEASE_LOCK.decode(enc(bad))
    with pytest.raises(TypeError, match="cannot be encoded"):
        LEASE_LOCK.encode(lease_lock.WriteRequest(7, object()))


@attrs.frozen
class Bounded:
    n: int = attrs.field(validator=attrs.validators.ge(0))
    _private: str = "x"


@attrs.define
class Derived:
    n: int
    double: int = attrs.field(init=False, default=0)


def test_attrs_validators_run_on_decoded_messages() -> None:
    proto = WireProtocol("b", 1, [Bounded])
    assert proto.decode(proto.encode(Bounded(3, "p"))) == Bounded(3, "p")  # private alias
    with pytest.raises(RemoteProtocolError, match=r"undecodable: Bounded: .*'n' must be >= 0"):
        proto.decode(msgspec.msgpack.encode(["Bounded", -1, "x"]))
    with pytest.raises(TypeError, match=r"Derived\.double is not set by __init__"):
        WireProtocol("d", 1, [Derived])
    with pytest.raises(TypeError, match="not a message type"):
        proto.encode(Derived(1))
