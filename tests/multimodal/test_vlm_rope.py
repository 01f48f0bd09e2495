"""M-RoPE positions (numpy) for Qwen2-VL / Qwen2.5-VL prompts."""

from __future__ import annotations

import numpy as np
import pytest

from mlxserve.models.vlm_rope import MediaBlock, mrope_positions

V, I = 9, 8  # video and image placeholder ids


def test_text_only_positions_are_sequential():
    positions, delta = mrope_positions([1, 2, 3], [], merge=2)
    assert positions.tolist() == [[0, 1, 2]] * 3 and delta == 0


def test_image_block_then_text():
    # 2 text tokens, an image of 4x6 patches (2x3 after the merge), 1 text token.
    tokens = [1, 2] + [I] * 6 + [3]
    positions, delta = mrope_positions(tokens, [MediaBlock(I, (1, 4, 6))], merge=2)
    assert positions[:, :2].tolist() == [[0, 1]] * 3
    assert positions[0, 2:8].tolist() == [2] * 6
    assert positions[1, 2:8].tolist() == [2, 2, 2, 3, 3, 3]
    assert positions[2, 2:8].tolist() == [2, 3, 4, 2, 3, 4]
    assert positions[:, 8].tolist() == [5, 5, 5]  # after the block's largest position
    assert delta == 6 - 9


@pytest.mark.parametrize("scale, times", [(1.0, [2, 2, 3, 3]), (2.0, [2, 2, 4, 4]),
                                          (0.5, [2, 2, 2, 2])])
def test_video_time_scale(scale, times):
    tokens = [1, 2] + [V] * 4 + [3]
    positions, delta = mrope_positions(tokens, [MediaBlock(V, (2, 2, 4), scale)], merge=2)
    assert positions[0, 2:6].tolist() == times
    assert positions[2, 2:6].tolist() == [2, 3, 2, 3]
    assert positions[0, 6] == max(times[-1], 3) + 1
    assert delta == positions.max() + 1 - len(tokens)


def test_two_blocks_in_order():
    tokens = [I] * 4 + [5] + [V] * 2 + [6]
    blocks = [MediaBlock(I, (1, 4, 4)), MediaBlock(V, (2, 2, 2), 1.0)]
    positions, _ = mrope_positions(tokens, blocks, merge=2)
    assert positions[:, 4].tolist() == [2, 2, 2]
    assert positions[0, 5:7].tolist() == [3, 4]
    assert np.all(positions[:, 7] == 5)


def test_missing_placeholder():
    with pytest.raises(ValueError):
        mrope_positions([1, 2], [MediaBlock(I, (1, 2, 2))], merge=2)
