"""One-token attention through a per-row mask, fused, on a CUDA GPU.

A decode step whose rows sit at different lengths attends through a (B, 1, 1, T) boolean
mask (cache/layout.py ``RowLayout.mask``). MLX's CUDA backend has no fused kernel for a
one-token query with a mask array (neither its vector kernel nor cuDNN's decode path
takes one), so it falls back to matmul + softmax + matmul: on the H200 with the 8B shape,
36 layers at 128 rows of ~350 tokens took 24 ms a step against 14 ms unmasked, and at
~1,500 tokens 70 ms against 13 (benchmarks/decode_attention.py). Real traffic is always
staggered, so that was most of a decode step at 128 clients.

``install()`` (engine start-up, CUDA only) routes exactly that case — one query token, a
boolean (B, 1, 1, T) mask, no sinks, head dim a multiple of 32 up to 256 — to
``decode_attention``, a kernel written with ``mx.fast.cuda_kernel``; every other call goes
to MLX's own function untouched (prefill, speculative verify steps, Metal, the CPU).
Metal's vector kernel takes masks already. The kernel skips masked keys, so the result
is softmax over the visible keys only, the same as MLX's; a row that sees no key gets
zeros (MLX would give NaN).

Kernel: one block of ``WARPS`` warps per (row, query head). Each warp takes every
``WARPS``-th key: a lane holds ``D / 32`` of the head's dimensions, the warp sums the dot
product by shuffles, and keeps an online softmax (running max, sum, weighted values) in
float32; the warps' partial results are merged through shared memory. Adjacent blocks
are the query heads of one KV head, so its keys are read from DRAM once and from L2 by
the others.
"""

from __future__ import annotations

import mlx.core as mx

WARPS = 4
_DTYPES = (mx.bfloat16, mx.float16, mx.float32)

_SOURCE = r"""
    constexpr int E = D / 32;
    const float NEG_INF = __int_as_float(0xff800000);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int head = blockIdx.y, row = blockIdx.z;
    const int heads = q_shape[1], group = heads / k_shape[1], keys_n = k_shape[2];
    const int kv = head / group;
    const T* qp = q + row * q_strides[0] + head * q_strides[1] + lane * E;
    const T* kb = k + row * k_strides[0] + kv * k_strides[1] + lane * E;
    const T* vb = v + row * v_strides[0] + kv * v_strides[1] + lane * E;
    const bool* mb = mask + row * mask_strides[0];
    float qv[E], acc[E];
    for (int e = 0; e < E; ++e) { qv[e] = static_cast<float>(qp[e]) * scale[0]; acc[e] = 0.f; }
    float best = NEG_INF, total = 0.f;
    for (int t = warp; t < keys_n; t += WARPS) {
        if (!mb[t * mask_strides[3]]) continue;
        const T* kp = kb + t * k_strides[2];
        float s = 0.f;
        for (int e = 0; e < E; ++e) s += qv[e] * static_cast<float>(kp[e]);
        for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffff, s, o);
        const float top = fmaxf(best, s), shrink = __expf(best - top), p = __expf(s - top);
        const T* vp = vb + t * v_strides[2];
        for (int e = 0; e < E; ++e) acc[e] = acc[e] * shrink + p * static_cast<float>(vp[e]);
        total = total * shrink + p;
        best = top;
    }
    __shared__ float bests[WARPS], totals[WARPS], accs[WARPS][D];
    if (lane == 0) { bests[warp] = best; totals[warp] = total; }
    for (int e = 0; e < E; ++e) accs[warp][lane * E + e] = acc[e];
    __syncthreads();
    if (warp != 0) return;
    float top = NEG_INF;
    for (int w = 0; w < WARPS; ++w) top = fmaxf(top, bests[w]);
    float sum = 0.f, o[E];
    for (int e = 0; e < E; ++e) o[e] = 0.f;
    for (int w = 0; w < WARPS; ++w) {
        const float c = bests[w] == NEG_INF ? 0.f : __expf(bests[w] - top);
        sum += totals[w] * c;
        for (int e = 0; e < E; ++e) o[e] += accs[w][lane * E + e] * c;
    }
    T* op = out + (row * heads + head) * D + lane * E;
    for (int e = 0; e < E; ++e) op[e] = static_cast<T>(sum > 0.f ? o[e] / sum : 0.f);
"""

_kernel = None
_original = None
calls = 0  # attention calls the kernel took (counted as graphs are built)
_scales: dict[float, mx.array] = {}


def handles(q: mx.array, k: mx.array, v: mx.array, mask, sinks=None) -> bool:
    """The case the kernel takes: one query token per row, a boolean (B, 1, 1, T) mask."""
    if sinks is not None or not isinstance(mask, mx.array) or mask.dtype != mx.bool_:
        return False
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4 or mask.ndim != 4 or q.shape[2] != 1:
        return False
    rows, heads, _, dim = q.shape
    return (mask.shape == (rows, 1, 1, k.shape[2]) and k.shape[0] == v.shape[0] == rows
            and dim % 32 == 0 and dim <= 256 and k.shape[3] == v.shape[3] == dim
            and k.shape[1] == v.shape[1] and heads % k.shape[1] == 0
            and q.dtype in _DTYPES and k.dtype == q.dtype and v.dtype == q.dtype)


def decode_attention(q: mx.array, k: mx.array, v: mx.array, scale: float,
                     mask: mx.array) -> mx.array:
    """softmax(q k^T * scale, over the keys ``mask`` lets each row see) v, for
    ``handles``' case. K and V may be strided views (a prefix of a larger buffer)."""
    global _kernel
    if _kernel is None:
        _kernel = mx.fast.cuda_kernel(
            name="mlxserve_row_decode_attention",
            input_names=["q", "k", "v", "mask", "scale"], output_names=["out"],
            source=_SOURCE, ensure_row_contiguous=False)
    if scale not in _scales:
        _scales[scale] = mx.array([scale], dtype=mx.float32)
    rows, heads, _, dim = q.shape
    return _kernel(
        inputs=[q, k, v, mask, _scales[scale]],
        template=[("T", q.dtype), ("D", dim), ("WARPS", WARPS)],
        grid=(32 * WARPS, heads, rows), threadgroup=(32 * WARPS, 1, 1),
        output_shapes=[q.shape], output_dtypes=[q.dtype])[0]


def _attention(q, k, v, *, scale, mask=None, **kwargs):
    global calls
    if not kwargs.get("stream") and handles(q, k, v, mask, kwargs.get("sinks")):
        calls += 1
        return decode_attention(q, k, v, scale, mask)
    return _original(q, k, v, scale=scale, mask=mask, **kwargs)


def available() -> bool:
    return mx.default_device() == mx.gpu and hasattr(mx, "cuda") and mx.cuda.is_available()


def install() -> bool:
    """Route ``handles``' case of ``mx.fast.scaled_dot_product_attention`` to the kernel
    (once per process; only where the default device is a CUDA GPU)."""
    global _original
    if _original is None and available():
        _original = mx.fast.scaled_dot_product_attention
        mx.fast.scaled_dot_product_attention = _attention
    return _original is not None
