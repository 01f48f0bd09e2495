"""Bounded prefill shapes on a GPU: bucket lengths, groups of powers of two, and the
(rows, width) shapes warmed at start-up."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mlxserve.engine.prefill import bucket_length, group_sizes, split_groups
from mlxserve.engine.warm_up import group_shapes, prefill_buckets


def test_group_sizes_are_the_binary_digits_largest_first():
    assert group_sizes(22) == [16, 4, 2]
    assert group_sizes(7) == [4, 2, 1]
    assert group_sizes(64) == [64]
    assert group_sizes(1) == [1]


@given(st.integers(min_value=1, max_value=4096))
def test_group_sizes_cover_every_row_once_in_powers_of_two(n):
    sizes = group_sizes(n)
    assert sum(sizes) == n
    assert all(s & (s - 1) == 0 for s in sizes)
    assert sizes == sorted(set(sizes), reverse=True)


def test_split_groups_sorts_by_length_and_leaves_a_last_single_row_out():
    lengths = [300, 20, 410, 25, 390, 30, 22]  # 7 prompts: 4 + 2 + 1
    groups = split_groups(list(range(7)), lambda k: lengths[k])
    assert [[lengths[k] for k in g] for g in groups] == [[20, 22, 25, 30], [300, 390]]


def test_group_shapes_stay_within_the_step_budget():
    buckets = prefill_buckets(512)
    assert buckets == [16, 32, 64, 128, 256, 320, 384, 448, 512]
    shapes = group_shapes(buckets, 8192, 256)
    assert (16, 512) in shapes and (32, 256) in shapes and (256, 32) in shapes
    assert (32, 320) not in shapes and (512, 16) not in shapes
    assert all(r * w <= 8192 and r & (r - 1) == 0 and r >= 2 for r, w in shapes)
    assert all(bucket_length(w) == w for _, w in shapes)
