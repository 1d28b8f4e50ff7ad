"""The batcher over a fake model: what is stacked, what runs alone, and who gets which rows."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np
import pytest

from model_manager.errors import InvalidInput
from model_manager.serving.batching import Batcher, BatchPolicy
from model_manager.types import Array, Tensors

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Doubler:
    """y = 2x, row by row; remembers the batch sizes it ran."""

    def __init__(self, fail_on: float | None = None, aligned: bool = True) -> None:
        self.calls: list[int] = []
        self.fail_on = fail_on
        self.aligned = aligned

    async def __call__(self, inputs: Tensors, names: Sequence[str]) -> tuple[dict[str, Array], float]:
        x = inputs["x"]
        self.calls.append(x.shape[0])
        await asyncio.sleep(0)
        if self.fail_on is not None and (x == self.fail_on).any():
            raise ValueError("bad row")
        outputs = {"y": x * 2}
        if not self.aligned:
            outputs["total"] = np.array([x.sum()])
        return outputs, 0.001


def rows(*values: float) -> Tensors:
    return {"x": np.array([[v, v] for v in values], dtype=np.float32)}


async def test_concurrent_requests_run_as_one_batch_and_get_their_own_rows() -> None:
    model = Doubler()
    batcher = Batcher(BatchPolicy(max_batch_size=8, max_queue_delay_us=50_000), model)
    answers = await asyncio.gather(*(batcher.predict(rows(i, i + 0.5), ["y"]) for i in range(4)))
    assert model.calls == [8]
    for i, (outputs, _) in enumerate(answers):
        np.testing.assert_array_equal(outputs["y"], rows(i, i + 0.5)["x"] * 2)


async def test_a_full_batch_runs_without_waiting_and_the_rest_waits_for_the_next() -> None:
    model = Doubler()
    batcher = Batcher(BatchPolicy(max_batch_size=4, max_queue_delay_us=200_000), model)
    tasks = [asyncio.create_task(batcher.predict(rows(i, i), ["y"])) for i in range(3)]
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    assert done == set(tasks[:2]) and pending == {tasks[2]}
    await tasks[2]
    assert model.calls == [4, 2]
    np.testing.assert_array_equal(tasks[2].result()[0]["y"], rows(2, 2)["x"] * 2)


async def test_a_request_as_large_as_a_batch_runs_alone() -> None:
    model = Doubler()
    batcher = Batcher(BatchPolicy(max_batch_size=4, max_queue_delay_us=10_000_000), model)
    outputs, _ = await batcher.predict(rows(9, 9, 9, 9), ["y"])
    assert model.calls == [4]
    np.testing.assert_array_equal(outputs["y"], rows(9, 9, 9, 9)["x"] * 2)


async def test_requests_that_do_not_stack_run_separately() -> None:
    model = Doubler()
    batcher = Batcher(BatchPolicy(max_batch_size=8, max_queue_delay_us=20_000), model)
    wide = {"x": np.ones((1, 3), dtype=np.float32)}
    answers = await asyncio.gather(batcher.predict(rows(1), ["y"]), batcher.predict(wide, ["y"]),
                                   batcher.predict(rows(2), ["y"]))
    assert sorted(model.calls) == [1, 2]
    np.testing.assert_array_equal(answers[1][0]["y"], wide["x"] * 2)


async def test_one_bad_request_fails_alone() -> None:
    model = Doubler(fail_on=13)
    batcher = Batcher(BatchPolicy(max_batch_size=8, max_queue_delay_us=20_000), model)
    good, bad = await asyncio.gather(batcher.predict(rows(1), ["y"]), batcher.predict(rows(13), ["y"]),
                                     return_exceptions=True)
    assert isinstance(bad, ValueError)
    assert not isinstance(good, BaseException)
    np.testing.assert_array_equal(good[0]["y"], rows(1)["x"] * 2)


async def test_outputs_that_are_not_row_aligned_are_computed_per_request() -> None:
    model = Doubler(aligned=False)
    batcher = Batcher(BatchPolicy(max_batch_size=8, max_queue_delay_us=20_000), model)
    first, second = await asyncio.gather(batcher.predict(rows(1), ["y"]), batcher.predict(rows(2), ["y"]))
    assert first[0]["total"].tolist() == [2.0] and second[0]["total"].tolist() == [4.0]


@pytest.mark.parametrize(("data", "message"), [
    ({"max_batch_size": 0}, "max_batch_size"), ({"max_queue_delay_us": "5ms"}, "max_queue_delay_us"),
    ({"size": 4}, "batching is"), ([4], "batching is"),
])
def test_bad_policies_are_refused(data: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        BatchPolicy.from_json(data)
