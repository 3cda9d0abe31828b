"""The NATS worker cluster: broker, wire protocol, workers, local server."""

from ..errors import ClusterError
from .broker import DataflowNatsBroker
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
