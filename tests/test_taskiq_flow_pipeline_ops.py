"""taskiq-flow's map-reduce operations of DataflowPipeline: map, reduce, kiq_map_reduce,
kiq_map_reduce_advanced, kiq_map_sweep."""

import pytest
from conftest import run
from taskiq_dataflow import DataflowPipeline, MissingInputError, TaskFailedError, pipeline_task
from taskiq_dataflow.map_reduce import ChunkConfig


def _track_tasks(broker):
    @broker.task
    @pipeline_task(output="track_features")
    async def process_single_track(track: str) -> dict:
        return {"track": track, "duration": 180.0, "bpm": 120 + len(track)}

    @broker.task
    @pipeline_task(output="playlist_stats")
    async def aggregate_track_features(track_features: list[dict]) -> dict:
        return {
            "total_tracks": len(track_features),
            "tracks": [t["track"] for t in track_features],
        }

    return process_single_track, aggregate_track_features


def test_map_then_reduce_returns_every_operations_output(broker):
    process, aggregate = _track_tasks(broker)
    tracks = ["a.mp3", "bb.mp3", "ccc.mp3"]
    pipeline = DataflowPipeline(broker)
    returned = pipeline.map(process, tracks, output="track_features", max_parallel=2)
    assert returned is pipeline
    pipeline.reduce(aggregate, input_name="track_features", output="playlist_stats")
    results = run(pipeline.kiq_map_reduce())
    assert [t["track"] for t in results["track_features"]] == tracks
    assert results["playlist_stats"] == {"total_tracks": 3, "tracks": tracks}


def test_map_with_chunks_and_reduce_with_chunks(broker):
    def double(x):
        return 2 * x

    pipeline = DataflowPipeline(broker, max_parallel=3)
    pipeline.map(double, range(10), output="doubled", chunk_config=ChunkConfig(chunk_size=4))
    pipeline.reduce(sum, "doubled", output="total", chunk_size=3)
    assert run(pipeline.kiq_map_reduce()) == {
        "doubled": [2 * x for x in range(10)],
        "total": 90,
    }


def test_reduce_reads_an_input_and_initial(broker):
    pipeline = DataflowPipeline(broker)
    pipeline.reduce(max, "scores", output="best")
    pipeline.reduce(sum, "none", output="zero", initial=0)
    assert run(pipeline.kiq_map_reduce(scores=[3, 9, 4], none=[])) == {"best": 9, "zero": 0}
    with pytest.raises(MissingInputError, match=r"reduce of 'max' reads 'scores'.*scores=\["):
        run(pipeline.kiq_map_reduce(none=[]))


def test_operation_errors_name_the_culprit(broker):
    pipeline = DataflowPipeline(broker)
    with pytest.raises(ValueError, match="no map or reduce operation"):
        run(pipeline.kiq_map_reduce())
    pipeline.map(abs, [1], output="x")
    with pytest.raises(
        ValueError, match="output 'x' is already produced by the operation of 'abs'"
    ):
        pipeline.reduce(sum, "x", output="x")
    with pytest.raises(TypeError, match="items must be a list"):
        pipeline.map(abs, "abc", output="y")
    with pytest.raises(TypeError, match="'bogus'.*neither an engine option nor a parameter"):
        pipeline.map(lambda v: v, [1], output="z", bogus=1)


def test_a_failing_map_item_raises_naming_it(broker):
    def picky(x):
        if x == 2:
            raise ValueError("no twos")
        return x

    pipeline = DataflowPipeline(broker).map(picky, [1, 2, 3], output="picked")
    with pytest.raises(TaskFailedError, match=r"picky\[1\]"):
        run(pipeline.kiq_map_reduce())


def test_kiq_map_reduce_advanced_returns_the_reduction(broker):
    process, aggregate = _track_tasks(broker)
    pipeline = DataflowPipeline(broker)
    stats = run(
        pipeline.kiq_map_reduce_advanced(
            process, aggregate, ["x", "y"], max_parallel=2, reduce_chunk_size=None
        )
    )
    assert stats == {"total_tracks": 2, "tracks": ["x", "y"]}
    total = run(
        pipeline.kiq_map_reduce_advanced(lambda x: x * x, sum, range(5), reduce_chunk_size=2)
    )
    assert total == 30


def test_kiq_map_sweep(broker):
    def train(learning_rate, batch_size):
        return learning_rate * batch_size

    pipeline = DataflowPipeline(broker)
    result = run(
        pipeline.kiq_map_sweep(
            train,
            param_values={"learning_rate": [1, 2], "batch_size": [10, 100]},
            output="experiments",
            max_parallel=2,
        )
    )
    assert result["experiments"] == [10, 100, 20, 200]
    assert result["metadata"]["items_processed"] == 4
    assert result["metadata"]["success_rate"] == 1.0 and result["metadata"]["errors"] == 0
