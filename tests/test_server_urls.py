"""Server URL lists: DataflowNatsBroker's `servers`, $DATAFLOW_NATS_URL and `--server`."""

from __future__ import annotations

from typing import Any

import pytest
from taskiq_dataflow.cluster import DataflowNatsBroker
from taskiq_dataflow.cluster.broker import server_list
from taskiq_dataflow.cluster.values import cluster_size
from taskiq_dataflow.errors import ClusterError


def test_a_comma_list_a_list_and_one_url_give_the_same_servers_in_order() -> None:
    urls = ["nats://a:4222", "nats://b:4222", "tls://c:4443"]
    assert server_list(",".join(urls)) == urls
    assert server_list(" nats://a:4222 , nats://b:4222,tls://c:4443,") == urls
    assert server_list(["nats://a:4222,nats://b:4222", "tls://c:4443"]) == urls
    assert server_list("nats://a:4222") == ["nats://a:4222"]
    assert server_list("a:4222") == ["a:4222"]  # nats-py reads a bare host:port as nats://


def test_the_broker_takes_a_comma_list_and_its_environment_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert DataflowNatsBroker("nats://a:1,nats://b:2").servers == ["nats://a:1", "nats://b:2"]
    monkeypatch.setenv("DATAFLOW_NATS_URL", "nats://x:1,nats://y:2")
    broker = DataflowNatsBroker()
    assert broker.servers == ["nats://x:1", "nats://y:2"]
    broker.use_servers(["nats://z:3"])
    assert broker.servers == ["nats://z:3"]


@pytest.mark.parametrize(
    ("servers", "culprit"),
    [
        ("http://a:4222", "has scheme 'http'"),
        ("nats://a:4222,nats://:4222", "'nats://:4222' names no host"),
        ("nats://a:notaport", "'nats://a:notaport' is not valid"),
        ("nats://u:s3cret@a:0", "'nats://u:***@a:0' has port 0"),
        (" , ", "no NATS server URL"),
    ],
)
def test_a_bad_url_is_named_with_its_password_hidden(servers: str, culprit: str) -> None:
    with pytest.raises(ClusterError) as caught:
        DataflowNatsBroker(servers)
    assert culprit in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_object_store_replicas_must_be_what_jetstream_keeps() -> None:
    with pytest.raises(ClusterError, match="object_store_replicas=7: JetStream keeps 1 to 5"):
        DataflowNatsBroker("nats://a:1", object_store_replicas=7)
    assert DataflowNatsBroker("nats://a:1", object_store_replicas=3).object_store_replicas == 3


class _Connection:
    def __init__(self, info: dict[str, object]) -> None:
        self._server_info = info


def test_cluster_size_counts_the_servers_the_connected_one_advertises() -> None:
    assert cluster_size(_Connection({})) == 1
    assert cluster_size(_Connection({"connect_urls": ["10.0.0.1:4222"]})) == 1
    urls = ["10.0.0.1:4222", "10.0.0.2:4222", "10.0.0.3:4222", "10.0.0.3:4222"]
    assert cluster_size(_Connection({"connect_urls": urls})) == 3
    assert cluster_size(_Connection({"connect_urls": "10.0.0.1:4222"})) == 1  # not a list
    assert cluster_size(_Connection({"connect_urls": [1, None, "a:1"]})) == 1


@pytest.mark.parametrize(
    "command", [["run", "m:registry"], ["worker", "m:broker"], ["runs", "restart", "abc"]]
)
def test_server_repeated_and_comma_lists_add_up_in_order(command: list[str]) -> None:
    argv = [*command, "--server", "nats://a:1", "--server", "nats://b:2,nats://c:3"]
    args = _parser().parse_args(argv)
    assert args.server == ["nats://a:1", "nats://b:2", "nats://c:3"]


def test_server_routes_repeated_and_comma_lists_add_up() -> None:
    argv = ["server", "--cluster", "6222", "--routes", "nats://a:6222", "--routes",
            "nats://b:6222,nats://c:6222"]  # fmt: skip
    args = _parser().parse_args(argv)
    assert args.routes == ["nats://a:6222", "nats://b:6222", "nats://c:6222"]
    assert args.cluster == "6222"


def _parser() -> Any:
    from taskiq_dataflow.cli import add_runs_parser, build_parser

    return build_parser(add_runs_parser)
