"""One-token attention over rows of a batch, fused, on a CUDA GPU.

A decode step whose rows sit at different lengths attends through a (B, 1, 1, T) boolean
mask (cache/layout.py ``RowLayout.mask``). MLX's CUDA backend has no fused kernel for a
one-token query with a mask array (neither its vector kernel nor cuDNN's decode path
takes one), so it falls back to matmul + softmax + matmul: on the H200 with the 8B shape,
36 layers at 128 rows of ~350 tokens took 21 ms a step against 14 ms unmasked, and at
~1,500 tokens 71 ms against 14 (benchmarks/decode_attention.py). Real traffic is always
staggered, so that was most of a decode step at 128 clients. Rows at one length (no
mask) were measured faster through this kernel too, up to ~1,000 keys.

``install()`` (engine start-up, CUDA only) routes these cases of
``mx.fast.scaled_dot_product_attention`` to ``decode_attention``, a kernel written with
``mx.fast.cuda_kernel``: one query token, a boolean (B, 1, 1, T) mask or (``UNMASKED``) no
mask up to ``UNMASKED_MAX_KEYS`` keys, no sinks, head dim a multiple of 32 up to 256, at
least ``MIN_BLOCKS`` rows x KV heads. A few query tokens (a speculative verify step) go to
``cache/short_query`` (MLX ops: cuDNN would build a graph for each new key length). Every
other call goes to MLX's own function untouched (prefill, long unmasked rows). The
kernel skips masked keys, so the result is softmax over the visible keys only, the same
as MLX's; a row that sees no key gets zeros (MLX would give NaN).

Kernel: one block per (row, KV head), all the KV head's query heads (GQA's group) in it,
so each key and value is read once for the group. The block's warps take turns over runs
of ``U`` keys (``_unroll``: their loads are in flight together): a lane holds ``D / 32``
of the head's dimensions, the warp sums the group's dot products by shuffles and keeps an
online softmax per query head (running max, sum, weighted values) in float32, rescaled
once per run; the warps merge through shared memory. A block reads its row's keys alone,
so few long rows leave the GPU idle: splitting keys over blocks (merged by MLX ops) was
measured slower than MLX's own path at 2-8 rows, so below ``MIN_BLOCKS`` (32 rows of 8 KV
heads) the call stays on MLX's path; MLX's unmasked kernel does split long rows, which is
why it wins beyond ~1,000 keys.

H200, 8B shape (36 layers, 32 query / 8 KV heads, head dim 128, bf16), one decode step's
attention with one step in flight, ms (results/h200_session8.md): 64 / 128 / 256 rows of
~350-414 tokens: MLX unmasked 7.1 / 14.1 / 25.1, this kernel unmasked 4.7 / 8.5 / 16.8;
MLX masked 11.8 / 21.4 / 41.1, this kernel masked 5.0 / 10.0 / 12.7. Rows of 700 tokens at
one length: MLX 10.9 / 20.8 / 31.6, kernel 8.1 / 14.8 / 20.9. 128 rows of ~1,500-1,750:
MLX unmasked 13.8, kernel unmasked 23.2 (so not routed), MLX masked 70.6, kernel masked
19.8. The decode step of the whole engine at 128 rows: 17.4 ms at one length (21.4 before),
21.3 staggered (37.7 before the kernel).
"""

from __future__ import annotations

from contextlib import contextmanager

import mlx.core as mx

from mlxserve.cache import short_query

_DTYPES = (mx.bfloat16, mx.float16, mx.float32)
MIN_BLOCKS = 256  # rows x KV heads below this stay on MLX's path (see the module's doc)
UNMASKED = True  # rows at one length (no mask) take the kernel too, up to:
UNMASKED_MAX_KEYS = 768  # beyond, MLX's unmasked kernel is faster (see the module's doc)

_SOURCE = r"""
    constexpr int E = D / 32;
    const float NEG_INF = __int_as_float(0xff800000);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int kv = blockIdx.y, row = blockIdx.z;
    const int heads = q_shape[1], keys_n = k_shape[2];
    float qv[G][E], acc[G][E], best[G], total[G];
    #pragma unroll
    for (int g = 0; g < G; ++g) {
        const T* qp = q + row * q_strides[0] + (kv * G + g) * q_strides[1] + lane * E;
        #pragma unroll
        for (int e = 0; e < E; ++e) {
            qv[g][e] = static_cast<float>(qp[e]) * scale[0];
            acc[g][e] = 0.f;
        }
        best[g] = NEG_INF;
        total[g] = 0.f;
    }
    const T* kb = k + row * k_strides[0] + kv * k_strides[1] + lane * E;
    const T* vb = v + row * v_strides[0] + kv * v_strides[1] + lane * E;
    for (int first = warp * U; first < keys_n; first += WARPS * U) {
        bool seen[U];
        float kf[U][E], vf[U][E], s[U][G];
        #pragma unroll
        for (int u = 0; u < U; ++u) {
            const int t = first + u;
            seen[u] = t < keys_n;
            if constexpr (MASKED) {
                seen[u] = seen[u] && mask[row * mask_strides[0] + t * mask_strides[3]];
            }
        }
        #pragma unroll
        for (int u = 0; u < U; ++u) {
            const T* kp = kb + (long)(first + u) * k_strides[2];
            const T* vp = vb + (long)(first + u) * v_strides[2];
            #pragma unroll
            for (int e = 0; e < E; ++e) {
                kf[u][e] = seen[u] ? static_cast<float>(kp[e]) : 0.f;
                vf[u][e] = seen[u] ? static_cast<float>(vp[e]) : 0.f;
            }
        }
        #pragma unroll
        for (int u = 0; u < U; ++u) {
            #pragma unroll
            for (int g = 0; g < G; ++g) {
                float dot = 0.f;
                #pragma unroll
                for (int e = 0; e < E; ++e) dot += qv[g][e] * kf[u][e];
                s[u][g] = dot;
            }
        }
        #pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            #pragma unroll
            for (int u = 0; u < U; ++u) {
                #pragma unroll
                for (int g = 0; g < G; ++g) s[u][g] += __shfl_xor_sync(0xffffffff, s[u][g], o);
            }
        }
        #pragma unroll
        for (int g = 0; g < G; ++g) {
            float top = best[g];
            #pragma unroll
            for (int u = 0; u < U; ++u) top = seen[u] ? fmaxf(top, s[u][g]) : top;
            if (top == NEG_INF) continue;  // no visible key yet
            const float shrink = expf(best[g] - top);
            float p[U], added = 0.f;
            #pragma unroll
            for (int u = 0; u < U; ++u) {
                p[u] = seen[u] ? expf(s[u][g] - top) : 0.f;
                added += p[u];
            }
            #pragma unroll
            for (int e = 0; e < E; ++e) {
                float a = acc[g][e] * shrink;
                #pragma unroll
                for (int u = 0; u < U; ++u) a += p[u] * vf[u][e];
                acc[g][e] = a;
            }
            total[g] = total[g] * shrink + added;
            best[g] = top;
        }
    }
    __shared__ float bests[WARPS][G], totals[WARPS][G], accs[WARPS][G][D];
    #pragma unroll
    for (int g = 0; g < G; ++g) {
        if (lane == 0) { bests[warp][g] = best[g]; totals[warp][g] = total[g]; }
        #pragma unroll
        for (int e = 0; e < E; ++e) accs[warp][g][lane * E + e] = acc[g][e];
    }
    __syncthreads();
    for (int i = threadIdx.x; i < G * D; i += WARPS * 32) {
        const int g = i / D, d = i % D;
        float top = NEG_INF, sum = 0.f, o = 0.f;
        for (int w = 0; w < WARPS; ++w) top = fmaxf(top, bests[w][g]);
        for (int w = 0; w < WARPS; ++w) {
            const float c = bests[w][g] == NEG_INF ? 0.f : expf(bests[w][g] - top);
            sum += totals[w][g] * c;
            o += accs[w][g][d] * c;
        }
        out[(long)(row * heads + kv * G + g) * D + d] = static_cast<T>(sum > 0.f ? o / sum : 0.f);
    }
"""
_kernel = None
_no_mask = None  # the mask input of an unmasked call (the kernel does not read it)
_original = None
calls = 0  # attention calls the kernel took (counted as graphs are built)
_scales: dict[float, mx.array] = {}


def _warps(group: int, dim: int) -> int:
    """Warps per block: as many as the merge's shared memory (warps x group x dim floats)
    keeps within 32 KB, at most 8."""
    return max(1, min(8, 8192 // (group * dim)))


def _unroll(group: int, dim: int) -> int:
    """Keys a warp reads at once: their loads are in flight together (one key at a time
    left the kernel waiting on memory), as many as ~48 registers of keys, values and
    scores allow (each key holds 2 x dim / 32 + group floats per lane)."""
    per_key = 2 * (dim // 32) + group
    return next(u for u in (4, 2, 1) if u * per_key <= 48 or u == 1)


def handles(q: mx.array, k: mx.array, v: mx.array, mask, sinks=None) -> bool:
    """The case the kernel takes: one query token per row, a boolean (B, 1, 1, T) mask
    (or, when ``UNMASKED``, no mask), at least ``MIN_BLOCKS`` rows x KV heads."""
    if sinks is not None or q.ndim != 4 or k.ndim != 4 or v.ndim != 4 or q.shape[2] != 1:
        return False
    rows, heads, _, dim = q.shape
    if mask is None:
        if not UNMASKED or k.shape[2] > UNMASKED_MAX_KEYS:
            return False
    elif not (isinstance(mask, mx.array) and mask.dtype == mx.bool_
              and mask.shape == (rows, 1, 1, k.shape[2])):
        return False
    return (k.shape[0] == v.shape[0] == rows
            and dim % 32 == 0 and dim <= 256 and k.shape[3] == v.shape[3] == dim
            and k.shape[1] == v.shape[1] and heads % k.shape[1] == 0
            and (heads // k.shape[1]) * dim <= 8192 and rows * k.shape[1] >= MIN_BLOCKS
            and q.dtype in _DTYPES and k.dtype == q.dtype and v.dtype == q.dtype)


def decode_attention(q: mx.array, k: mx.array, v: mx.array, scale: float,
                     mask: mx.array | None, unroll: int | None = None) -> mx.array:
    """softmax(q k^T * scale, over the keys ``mask`` lets each row see; all without one) v,
    for ``handles``' case. K and V may be strided views (a prefix of a larger buffer).
    ``unroll``: keys a warp reads at once (default ``_unroll``; benchmarks vary it)."""
    global _kernel, _no_mask
    if _kernel is None:
        _kernel = mx.fast.cuda_kernel(
            name="mlxserve_row_attention", input_names=["q", "k", "v", "mask", "scale"],
            output_names=["out"], source=_SOURCE, ensure_row_contiguous=False)
        _no_mask = mx.ones((1, 1, 1, 1), dtype=mx.bool_)
    if scale not in _scales:
        _scales[scale] = mx.array([scale], dtype=mx.float32)
    rows, heads, _, dim = q.shape
    group = heads // k.shape[1]
    warps = _warps(group, dim)
    template = [("T", q.dtype), ("D", dim), ("G", group), ("WARPS", warps),
                ("U", unroll or _unroll(group, dim)), ("MASKED", mask is not None)]
    return _kernel(inputs=[q, k, v, _no_mask if mask is None else mask, _scales[scale]],
                   template=template, grid=(32 * warps, k.shape[1], rows),
                   threadgroup=(32 * warps, 1, 1), output_shapes=[q.shape],
                   output_dtypes=[q.dtype])[0]


def _attention(q, k, v, *, scale, mask=None, **kwargs):
    global calls
    if not kwargs.get("stream"):
        sinks = kwargs.get("sinks")
        if handles(q, k, v, mask, sinks):
            calls += 1
            return decode_attention(q, k, v, scale, mask)
        if short_query.handles(q, k, v, mask, sinks):
            return short_query.attention(q, k, v, scale, mask)
    return _original(q, k, v, scale=scale, mask=mask, **kwargs)


def available() -> bool:
    from mlxserve.backend import is_cuda

    return mx.default_device() == mx.gpu and is_cuda()


def install() -> bool:
    """Route ``handles``' case of ``mx.fast.scaled_dot_product_attention`` to the kernel
    (once per process; only where the default device is a CUDA GPU)."""
    global _original
    if _original is None and available():
        _original = mx.fast.scaled_dot_product_attention
        mx.fast.scaled_dot_product_attention = _attention
    return _original is not None


@contextmanager
def mlx_attention():
    """MLX's own attention inside (a benchmark's mlx-lm reference in a process where an
    engine routed the kernel: the reference must be mlx-lm as users run it)."""
    if _original is None:
        yield
        return
    mx.fast.scaled_dot_product_attention = _original
    try:
        yield
    finally:
        mx.fast.scaled_dot_product_attention = _attention
