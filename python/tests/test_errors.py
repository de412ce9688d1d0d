"""Bad inputs raise clear errors before reaching the C library; missing features raise
NotImplementedError naming the argument; library failures carry the library's message."""
import numpy as np
import pytest

import polyattn
from conftest import randn


@pytest.fixture
def qkv(rng):
    return randn(rng, 2, 8, 4, 16), randn(rng, 2, 8, 2, 16), randn(rng, 2, 8, 2, 16)


def test_wrong_rank(qkv):
    q, k, v = qkv
    with pytest.raises(ValueError, match=r"q: expected 4 dimensions"):
        polyattn.flash_attn_func(q[0], k, v)
    with pytest.raises(ValueError, match=r"k: expected 4 dimensions"):
        polyattn.attention(q, k[0], v)


def test_mismatched_dtypes(qkv):
    q, k, v = qkv
    with pytest.raises(TypeError, match=r"k: dtype f16 differs from q's f32"):
        polyattn.flash_attn_func(q, k.astype(np.float16), v)
    with pytest.raises(TypeError, match=r"float64"):
        polyattn.flash_attn_func(q.astype(np.float64), k, v)
    with pytest.raises(TypeError, match=r"not an array"):
        polyattn.flash_attn_func(q.tolist(), k, v)


def test_non_contiguous_last_dim(qkv):
    q, k, v = qkv
    qt = np.ascontiguousarray(np.swapaxes(q, 2, 3)).swapaxes(2, 3)
    with pytest.raises(ValueError, match=r"q: the last dimension \(head_dim\) must be contiguous"):
        polyattn.flash_attn_func(qt, k, v)
    with pytest.raises(ValueError, match=r"out: the last dimension"):
        polyattn.flash_attn_func(q, k, v, out=np.empty((2, 8, 4, 32), np.float32)[..., ::2])


def test_shapes(qkv, rng):
    q, k, v = qkv
    with pytest.raises(ValueError, match=r"head_dim: q has 16, k 8"):
        polyattn.flash_attn_func(q, k[..., :8], v)
    with pytest.raises(ValueError, match=r"not a multiple"):
        polyattn.flash_attn_func(randn(rng, 2, 8, 3, 16), k, v)
    with pytest.raises(ValueError, match=r"batch"):
        polyattn.flash_attn_func(q[:1], k, v)
    with pytest.raises(ValueError, match=r"out: shape"):
        polyattn.flash_attn_func(q, k, v, out=np.empty((2, 8, 4, 8), np.float32))
    with pytest.raises(ValueError, match=r"layout"):
        polyattn.attention(q, k, v, layout="sbhd")
    with pytest.raises(ValueError, match=r"mask"):
        polyattn.attention(q, k, v, mask="causal")
    with pytest.raises(ValueError, match=r"algo"):
        polyattn.attention(q, k, v, algo="fastest")
    with pytest.raises(ValueError, match=r"backend"):
        polyattn.attention(q, k, v, backend="metal")
    with pytest.raises(ValueError, match=r"scale"):
        polyattn.attention(q, k, v, scale=-1.0)


def test_negative_window(qkv):
    q, k, v = qkv
    with pytest.raises(ValueError, match=r"window_size: \(-2, 0\) has a negative size"):
        polyattn.flash_attn_func(q, k, v, window_size=(-2, 0))
    with pytest.raises(ValueError, match=r"window: .* negative"):
        polyattn.attention(q, k, v, window=(3, -5))


@pytest.mark.parametrize("kwargs, name", [({"dropout_p": 0.1}, "dropout_p")])
def test_not_implemented_flash(qkv, kwargs, name):
    with pytest.raises(NotImplementedError, match=name):
        polyattn.flash_attn_func(*qkv, **kwargs)


def test_not_implemented_kvcache_and_varlen(rng):
    q, kc = randn(rng, 1, 1, 2, 8), randn(rng, 1, 4, 2, 8)
    with pytest.raises(NotImplementedError, match="rotary_cos"):
        polyattn.flash_attn_with_kvcache(q, kc, kc, rotary_cos=np.zeros((4, 4), np.float32))
    p = randn(rng, 4, 2, 8)
    cu = np.array([0, 4], np.int32)
    with pytest.raises(NotImplementedError, match="dropout_p"):
        polyattn.flash_attn_varlen_func(p, p, p, cu, cu, 4, 4, dropout_p=0.5)


@pytest.mark.parametrize("cu_q, cu_k, max_q, match", [
    ([0, 3, 2], [0, 2, 4], 3, r"cu_seqlens_q: decreases at index 2"),
    ([1, 3, 6], [0, 2, 4], 3, r"cu_seqlens_q: must start at 0"),
    ([0, 3, 9], [0, 2, 4], 6, r"cu_seqlens_q: ends at 9, beyond the 6 packed tokens"),
    ([0, 3, 6], [0, 2], 3, r"cu_seqlens_q has 3 entries, cu_seqlens_k 2"),
    ([0, 3, 6], [0, 2, 4], 2, r"max_seqlen_q: 2 is below the longest sequence \(3\)"),
    ([[0, 3, 6]], [0, 2, 4], 3, r"cu_seqlens_q: expected 1 dimension"),
    ([0.0, 3.0, 6.0], [0, 2, 4], 3, r"cu_seqlens_q: dtype float64 is not an integer"),
])
def test_bad_cu_seqlens(rng, cu_q, cu_k, max_q, match):
    q, k = randn(rng, 6, 2, 8), randn(rng, 4, 2, 8)
    with pytest.raises((ValueError, TypeError), match=match):
        polyattn.flash_attn_varlen_func(q, k, k, np.array(cu_q), np.array(cu_k), max_q, 2)


def test_kvcache_bad_lengths(rng):
    q, kc = randn(rng, 2, 1, 2, 8), randn(rng, 2, 4, 2, 8)
    kn = randn(rng, 2, 2, 2, 8)
    with pytest.raises(ValueError, match=r"cache_seqlens\[1\] = 3 plus 2 new tokens exceeds"):
        polyattn.flash_attn_with_kvcache(q, kc, kc.copy(), kn, kn, cache_seqlens=np.array([1, 3]))
    with pytest.raises(ValueError, match=r"cache_seqlens: needed"):
        polyattn.flash_attn_with_kvcache(q, kc, kc.copy(), kn, kn)
    with pytest.raises(ValueError, match=r"k and v: give both"):
        polyattn.flash_attn_with_kvcache(q, kc, kc, kn, None, cache_seqlens=0)
    with pytest.raises(ValueError, match=r"cache_seqlens: 3 entries"):
        polyattn.flash_attn_with_kvcache(q, kc, kc, cache_seqlens=np.array([1, 2, 3]))


def test_library_error_carries_message(qkv):
    q, k, v = qkv
    with pytest.raises(polyattn.UnsupportedError) as e:
        polyattn.flash_attn_func(q, k, v, algo="fused", backend="host")
    assert isinstance(e.value, polyattn.Error) and e.value.status == "UNSUPPORTED"
    assert "fused" in str(e.value) and "polyattn_plan_create" in str(e.value)
    with pytest.raises(polyattn.UnsupportedError, match="probabilit"):
        polyattn.flash_attn_func(q, k, v, algo="flash", return_attn_probs=True)
    with pytest.raises(polyattn.NotFoundError):
        polyattn.attention(q, k, v, layout="bshd", backend="host", device=5)
