"""Batching shared by both pipeline paths and the Triton backend: bounded chunks of boxes over frames."""

from __future__ import annotations

import pytest

from vitpose_trt.batching import PendingResult, boxes_per_batch, chunks, frame_batches


def test_frame_batches_caps_each_batch_and_keeps_every_box_once_in_order():
    counts = [3, 0, 70, 1, 64, 0]
    batches = list(frame_batches(counts, 64))
    assert all(sum(s.hi - s.lo for s in b) <= 64 for b in batches)
    assert all(s.hi > s.lo for b in batches for s in b)  # no empty pieces: frames without boxes take none
    seen = {i: [] for i in range(len(counts))}
    for b in batches:
        for s in b:
            seen[s.frame] += list(range(s.lo, s.hi))
    assert seen == {i: list(range(n)) for i, n in enumerate(counts)}  # every box once, in order
    assert [[(s.frame, s.lo, s.hi) for s in b] for b in batches] == \
        [[(0, 0, 3), (2, 0, 61)], [(2, 61, 70), (3, 0, 1), (4, 0, 54)], [(4, 54, 64)]]
    assert list(frame_batches([0, 0], 8)) == [] and list(frame_batches([], 8)) == []


@pytest.mark.parametrize("per", [0, -1])
def test_a_batch_size_below_one_is_refused_not_a_hang(per):
    with pytest.raises(ValueError, match="boxes per batch must be >= 1"):
        list(frame_batches([1], per))
    with pytest.raises(ValueError, match="chunk size"):
        list(chunks(3, per))


def test_chunks_and_flip_pairs():
    assert list(chunks(5, 2)) == [(0, 2), (2, 4), (4, 5)] and list(chunks(0, 2)) == []
    assert boxes_per_batch(8, flip=True) == 4 and boxes_per_batch(8, flip=False) == 8
    with pytest.raises(ValueError, match="flip-test pair"):
        boxes_per_batch(1, flip=True)


def test_pending_result_waits_once():
    calls = []
    pending = PendingResult(lambda: calls.append(1) or "done")
    assert pending.result() == pending.result() == "done" and calls == [1]
    assert PendingResult.done(3).result() == 3
