"""The NATS worker cluster: broker, wire protocol, workers, local server."""

from .broker import ClusterError, DataflowNatsBroker
from .protocol import Codec, EncodeError, ProtocolError, ValueRef
from .server import NatsServer

__all__ = [
    "ClusterError",
    "Codec",
    "DataflowNatsBroker",
    "EncodeError",
    "NatsServer",
    "ProtocolError",
    "ValueRef",
]
