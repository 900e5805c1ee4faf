"""runtime: the node driver, transports, codec, authentication, storage (docs/runtime.md)."""

from .codec import RemoteProtocolError, WireMessage, WireProtocol
from .driver import NO_STATE, NodeDriver, Start, TimerFired, Transition
from .local import LocalNetwork, LocalTransport, NodeStorage
from .storage import (
    CorruptStateError,
    DurableState,
    LoggedState,
    RecordLog,
    TokenBlocks,
    open_data_dir,
)
from .tcp import TcpTransport, TransportStatistics, open_tcp_transport
from .transport import Envelope, Transport

__all__ = [
    "NO_STATE",
    "CorruptStateError",
    "DurableState",
    "Envelope",
    "LocalNetwork",
    "LocalTransport",
    "LoggedState",
    "NodeDriver",
    "NodeStorage",
    "RecordLog",
    "RemoteProtocolError",
    "Start",
    "TcpTransport",
    "TimerFired",
    "TokenBlocks",
    "Transport",
    "TransportStatistics",
    "Transition",
    "WireMessage",
    "WireProtocol",
    "open_data_dir",
    "open_tcp_transport",
]
