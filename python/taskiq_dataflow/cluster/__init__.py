"""The NATS worker cluster: broker, wire protocol, workers, local server."""

from .broker import DataflowNatsBroker
from .protocol import Codec, EncodeError, ProtocolError, ValueRef
from .server import NatsServer

__all__ = ["Codec", "DataflowNatsBroker", "EncodeError", "NatsServer", "ProtocolError", "ValueRef"]
