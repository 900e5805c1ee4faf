"""runtime: transports, the wire codec, authentication and durable storage (see docs/runtime.md)."""

from .codec import RemoteProtocolError, WireMessage, WireProtocol
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
    "CorruptStateError",
    "DurableState",
    "Envelope",
    "LoggedState",
    "RecordLog",
    "RemoteProtocolError",
    "TcpTransport",
    "TokenBlocks",
    "Transport",
    "TransportStatistics",
    "WireMessage",
    "WireProtocol",
    "open_data_dir",
    "open_tcp_transport",
]
