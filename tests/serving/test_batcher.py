"""MicroBatcher: concurrent jobs share one model call, bounded by max_batch; a bad job fails alone."""

import asyncio

import numpy as np
import pytest

from dermpipe.serving.batching import MicroBatcher
from dermpipe.serving.settings import ServingError, tf_error_detail


class FakeModel:
    """predict() records each call's batch; an image equal to b"bad" fails the whole call, like a decode error."""

    def __init__(self, error: Exception):
        self.calls: list[list[bytes]] = []
        self.error = error

    def predict(self, images):
        self.calls.append(list(images))
        if b"bad" in images:
            raise self.error
        values = np.array([[float(len(i))] * 8 for i in images], np.float32)
        return values, values[:, :2]


async def _submit_all(batcher, model, jobs):
    batcher.start()
    results = await asyncio.gather(*(batcher.submit(model, job) for job in jobs), return_exceptions=True)
    await batcher.stop()
    return results


def test_concurrent_jobs_share_calls_up_to_max_batch():
    model = FakeModel(RuntimeError("unused"))
    jobs = [[b"x" * (i + 1)] for i in range(10)] + [[b"ab", b"abc"]]
    results = asyncio.run(_submit_all(MicroBatcher(max_batch=4, max_wait_s=0.05), model, jobs))
    assert all(len(batch) <= 4 for batch in model.calls)
    assert sum(len(batch) for batch in model.calls) == 12 and len(model.calls) <= 4
    for job, (probabilities, embedding) in zip(jobs, results, strict=True):
        assert probabilities[:, 0].tolist() == [float(len(i)) for i in job] and embedding.shape == (len(job), 2)


def _graph_error() -> Exception:
    """The InvalidArgumentError a tf.function raises: "Graph execution error:", the trace, then the message."""
    import tensorflow as tf

    @tf.function
    def decode(data):  # a def, not a lambda: TF names where the failing node was defined only for a def
        return tf.io.decode_image(data, channels=3, expand_animations=False)

    try:
        decode(tf.constant(b"bad"))
    except tf.errors.InvalidArgumentError as err:
        return err
    raise AssertionError("decode_image accepted b'bad'")


def test_a_tf_error_is_reported_by_its_message_not_its_trace():
    import tensorflow as tf

    err = _graph_error()
    assert str(err).startswith("Graph execution error")
    assert tf_error_detail(err).startswith("Unknown image file format")
    eager = tf.errors.InvalidArgumentError(None, None, "{{function_node __wrapped__DecodeImage}} Invalid JPEG data")
    assert tf_error_detail(eager) == "Invalid JPEG data"
    assert tf_error_detail(tf.errors.InvalidArgumentError(None, None, "")) == "InvalidArgumentError"
    assert len(tf_error_detail(ValueError("x" * 1000))) == 300


def test_a_job_that_breaks_the_batch_fails_alone_with_a_4xx():
    model = FakeModel(_graph_error())
    jobs = [[b"good1"], [b"bad"], [b"good22"]]
    failures: list[int] = []
    results = asyncio.run(_submit_all(MicroBatcher(max_batch=8, max_wait_s=0.05, observe_failure=failures.append),
                                      model, jobs))
    assert model.calls[0] == [b"good1", b"bad", b"good22"], "first one call for the whole batch"
    assert failures == [3, 1], "the batch of 3 failed, then the bad job alone (reported to /metrics)"
    assert results[0][0][0, 0] == 5.0 and results[2][0][0, 0] == 6.0
    assert isinstance(results[1], ServingError) and results[1].status == 422
    assert results[1].message.startswith("the model refused this request's input: Unknown image file format")


def test_other_model_errors_stay_server_errors():
    model = FakeModel(MemoryError("out of memory"))
    (result,) = asyncio.run(_submit_all(MicroBatcher(max_batch=8, max_wait_s=0.01), model, [[b"bad"]]))
    assert isinstance(result, MemoryError)


@pytest.mark.parametrize("max_wait_s", [0.0, 0.02])
def test_a_lone_request_is_answered_in_its_own_call(max_wait_s):
    model = FakeModel(RuntimeError("unused"))

    async def lone():
        batcher = MicroBatcher(max_batch=32, max_wait_s=max_wait_s)
        batcher.start()
        answer = await asyncio.wait_for(batcher.submit(model, [b"one"]), timeout=30)
        await batcher.stop()
        return answer

    probabilities, _ = asyncio.run(lone())
    assert probabilities[0, 0] == 3.0 and model.calls == [[b"one"]]


async def _lone_then_late(batcher, model, announce: bool):
    """Job a is submitted; job b 0.2 s later. With b announced (arriving) the batch waits for it (max_wait 2 s)."""
    batcher.start()

    async def late():
        if announce:
            with batcher.arriving():
                await asyncio.sleep(0.2)  # validation in progress
        else:
            await asyncio.sleep(0.2)
        return await batcher.submit(model, [b"bb"])

    results = await asyncio.gather(batcher.submit(model, [b"a"]), late())
    await batcher.stop()
    return results


def test_a_lone_request_is_not_held_back_but_an_arriving_one_is_waited_for():
    alone = FakeModel(RuntimeError("unused"))
    asyncio.run(_lone_then_late(MicroBatcher(max_batch=8, max_wait_s=2.0), alone, announce=False))
    assert alone.calls == [[b"a"], [b"bb"]]  # nobody was on the way: a ran at once, not after max_wait

    joined = FakeModel(RuntimeError("unused"))
    results = asyncio.run(_lone_then_late(MicroBatcher(max_batch=8, max_wait_s=2.0), joined, announce=True))
    assert joined.calls == [[b"a", b"bb"]]  # b was being validated: one call for both
    assert results[1][0][0, 0] == 2.0


def test_an_arrival_that_never_submits_delays_a_batch_by_max_wait_at_most():
    async def scenario():
        batcher = MicroBatcher(max_batch=8, max_wait_s=0.1)
        model = FakeModel(RuntimeError("unused"))
        batcher.start()
        with batcher.arriving():  # e.g. a request whose image fails validation: it never submits
            result = await batcher.submit(model, [b"a"])
        await batcher.stop()
        return model, result

    model, result = asyncio.run(scenario())
    assert model.calls == [[b"a"]] and result[0][0, 0] == 1.0
