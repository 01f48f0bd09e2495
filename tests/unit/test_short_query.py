"""The few-query attention (cache/short_query) against MLX's own attention, on this CPU."""

import mlx.core as mx
import pytest

from mlxserve.cache import row_attention, short_query


def _qkv(rows, heads, kv_heads, width, keys, dim, dtype=mx.float32, seed=0):
    mx.random.seed(seed)
    return (mx.random.normal((rows, heads, width, dim)).astype(dtype),
            mx.random.normal((rows, kv_heads, keys, dim)).astype(dtype),
            mx.random.normal((rows, kv_heads, keys, dim)).astype(dtype))


@pytest.mark.parametrize("heads,kv_heads", [(4, 4), (8, 2), (6, 1)])
@pytest.mark.parametrize("width,keys", [(2, 2), (5, 37), (16, 300)])
def test_causal_matches_mlx(heads, kv_heads, width, keys):
    q, k, v = _qkv(3, heads, kv_heads, width, keys, 64)
    want = mx.fast.scaled_dot_product_attention(q, k, v, scale=0.125, mask="causal")
    got = short_query.attention(q, k, v, 0.125, "causal")
    assert mx.allclose(got, want, atol=1e-5).item()


def test_boolean_row_mask_matches_mlx():
    """Rows at different lengths: a (B, 1, W, T) mask, each row's last keys hidden."""
    q, k, v = _qkv(4, 8, 2, 5, 40, 32)
    lengths = mx.array([40, 33, 12, 6])
    visible = mx.arange(40)[None, None, :] <= (lengths[:, None, None] - 5
                                                + mx.arange(5)[None, :, None])
    mask = visible[:, None]
    want = mx.fast.scaled_dot_product_attention(q, k, v, scale=0.2, mask=mask)
    assert mx.allclose(short_query.attention(q, k, v, 0.2, mask), want, atol=1e-5).item()


def test_additive_and_per_head_masks_match_mlx():
    q, k, v = _qkv(2, 4, 2, 3, 10, 32)
    bias = mx.random.normal((2, 4, 3, 10))
    want = mx.fast.scaled_dot_product_attention(q, k, v, scale=0.3, mask=bias)
    assert mx.allclose(short_query.attention(q, k, v, 0.3, bias), want, atol=1e-5).item()
    shared = mx.random.normal((3, 10)) > -1.0  # a 2-D mask for every row and head
    want = mx.fast.scaled_dot_product_attention(q, k, v, scale=0.3, mask=shared)
    assert mx.allclose(short_query.attention(q, k, v, 0.3, shared), want, atol=1e-5).item()


def test_bfloat16_stays_close_and_keeps_its_dtype():
    q, k, v = _qkv(2, 8, 4, 5, 64, 128, dtype=mx.bfloat16)
    want = mx.fast.scaled_dot_product_attention(q, k, v, scale=0.09, mask="causal")
    got = short_query.attention(q, k, v, 0.09, "causal")
    assert got.dtype == mx.bfloat16
    assert mx.allclose(got.astype(mx.float32), want.astype(mx.float32), atol=2e-2).item()


def test_only_a_few_queries_are_taken():
    q1, k, v = _qkv(1, 4, 4, 1, 8, 32)
    q17 = _qkv(1, 4, 4, 17, 32, 32)[0]
    assert short_query.handles(_qkv(1, 4, 4, 5, 8, 32)[0], k, v, "causal", None)
    assert not short_query.handles(q1, k, v, None, None)  # decode: row_attention / MLX
    assert not short_query.handles(q17, *_qkv(1, 4, 4, 17, 32, 32)[1:], "causal", None)
    assert not short_query.handles(_qkv(1, 4, 4, 5, 8, 32)[0], k, v, None, mx.zeros((4,)))


def test_not_installed_off_cuda():
    """Only CUDA routes attention here: this CPU keeps MLX's own function."""
    assert not row_attention.install()
    assert mx.fast.scaled_dot_product_attention is not row_attention._attention
