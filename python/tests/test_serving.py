"""flash_attn_varlen_func and flash_attn_with_kvcache (the library's serving layouts)
against a loop of flash_attn_func over the sequences, on NumPy arrays.  Backends other than
host skip where they do not have the serving layouts yet."""
import numpy as np
import pytest

import polyattn
from conftest import randn

TOL = 2e-5


def close(a, b, tol=TOL):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=tol,
                               atol=tol)


def serving(backend, fn, *args, **kwargs):
    """fn(*args, backend=backend, **kwargs); a backend without serving layouts skips."""
    try:
        return fn(*args, backend=backend, **kwargs)
    except polyattn.UnsupportedError as e:
        if backend == "host":
            raise
        pytest.skip(f"{backend}: {e}")


def dense(q, k, v, causal, **kwargs):
    """(o [1, sq, h, d], lse [1, h, sq]) of one sequence through flash_attn_func on the
    host; a sequence without keys gives O = 0, LSE = -inf."""
    if k.shape[1] == 0:
        hq = q.shape[2]
        return np.zeros(q.shape[:3] + (v.shape[3],), np.float32), \
            np.full((1, hq, q.shape[1]), -np.inf, np.float32)
    o, lse, _ = polyattn.flash_attn_func(q, k, v, causal=causal, return_attn_probs=True,
                                         backend="host", **kwargs)
    return o, lse


# ---- varlen -------------------------------------------------------------------------------

@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("heads", [(4, 4), (4, 1)])
def test_varlen_matches_dense_loop(backend, rng, causal, heads):
    lq, lk = [5, 0, 9, 3, 1, 2], [7, 4, 9, 2, 0, 1]  # empty queries, empty keys, sq > skv
    hq, hkv = heads
    cu_q, cu_k = np.cumsum([0] + lq).astype(np.int32), np.cumsum([0] + lk).astype(np.int32)
    tq, tk = sum(lq) + 2, sum(lk)  # two rows past the last sequence
    q, k, v = randn(rng, tq, hq, 16), randn(rng, tk, hkv, 16), randn(rng, tk, hkv, 16)
    out = np.full((tq, hq, 16), 7.0, np.float32)
    o, lse, probs = serving(backend, polyattn.flash_attn_varlen_func, q, k, v, cu_q, cu_k,
                            max(lq), max(lk), causal=causal, return_attn_probs=True, out=out)
    assert o is out and probs is None and lse.shape == (hq, tq) and lse.dtype == np.float32
    for i in range(len(lq)):
        a, c = cu_q[i], cu_k[i]
        if lq[i] == 0:
            continue
        eo, el = dense(q[None, a:a + lq[i]], k[None, c:c + lk[i]], v[None, c:c + lk[i]], causal)
        close(o[a:a + lq[i]], eo[0])
        close(lse[:, a:a + lq[i]], el[0])
    assert (o[sum(lq):] == 7).all()  # rows past cu_seqlens_q[-1] are not written
    plain = serving(backend, polyattn.flash_attn_varlen_func, q, k, v, cu_q, cu_k, 9, 9,
                    causal=causal)
    np.testing.assert_array_equal(plain[:sum(lq)], o[:sum(lq)])


def test_varlen_strided_and_int64_offsets(rng):
    """Packed views of a wider array (FlashAttention's qkv slices) and int64 offsets."""
    qkv = randn(rng, 10, 3, 2, 8)
    q, k, v = qkv[:, 0], qkv[:, 1], qkv[:, 2]
    cu = np.array([0, 4, 10])
    o = polyattn.flash_attn_varlen_func(q, k, v, cu, cu, 6, 6, causal=True,
                                        softmax_scale=0.3)
    for a, b in ((0, 4), (4, 10)):
        close(o[a:b], dense(q[None, a:b], k[None, a:b], v[None, a:b], True,
                            softmax_scale=0.3)[0][0])


def _paged(rng, cache, block_size, lens):
    """A paged copy of dense cache [b, cap, h, d]: shuffled blocks plus unused ones, and the
    block table [b, max_blocks]."""
    b, cap, h, d = cache.shape
    per = -(-cap // block_size)
    n_blocks = b * per + 3
    order = rng.permutation(n_blocks)[:b * per].reshape(b, per).astype(np.int32)
    blocks = randn(rng, n_blocks, block_size, h, d)  # unused blocks hold noise
    for i in range(b):
        for j in range(per):
            rows = cache[i, j * block_size:(j + 1) * block_size]
            blocks[order[i, j], :rows.shape[0]] = rows
    return blocks, order


def test_varlen_paged_keys(backend, rng):
    lq, lk = [3, 1, 0, 4], [20, 0, 5, 33]
    hq, hkv, d, bs = 4, 2, 8, 16
    cu_q, cu_k = np.cumsum([0] + lq).astype(np.int32), np.cumsum([0] + lk).astype(np.int32)
    q = randn(rng, sum(lq), hq, d)
    kd, vd = randn(rng, 4, 48, hkv, d), randn(rng, 4, 48, hkv, d)
    kp, table = _paged(rng, kd, bs, lk)
    vp = np.empty_like(kp)
    for i in range(4):
        for j in range(3):
            vp[table[i, j]] = vd[i, j * bs:(j + 1) * bs]
    o, lse, _ = serving(backend, polyattn.flash_attn_varlen_func, q, kp, vp, cu_q, cu_k, 4, 33,
                        causal=True, block_table=table, return_attn_probs=True)
    for i in range(4):
        a = cu_q[i]
        if lq[i]:
            eo, el = dense(q[None, a:a + lq[i]], kd[i:i + 1, :lk[i]], vd[i:i + 1, :lk[i]], True)
            close(o[a:a + lq[i]], eo[0])
            close(lse[:, a:a + lq[i]], el[0])


# ---- KV cache -----------------------------------------------------------------------------

def _cache_case(rng, b=3, sq=2, hq=4, hkv=2, d=16, cap=40):
    return (randn(rng, b, sq, hq, d), randn(rng, b, cap, hkv, d), randn(rng, b, cap, hkv, d))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("num_splits", [0, 1, 3])
def test_kvcache_dense_matches_dense_loop(backend, rng, causal, num_splits):
    q, kc, vc = _cache_case(rng)
    lens = np.array([17, 0, 40], np.int32)
    o, lse = serving(backend, polyattn.flash_attn_with_kvcache, q, kc, vc, cache_seqlens=lens,
                     causal=causal, num_splits=num_splits, return_softmax_lse=True)
    assert lse.shape == (3, 4, 2)
    for i, n in enumerate(lens):
        eo, el = dense(q[i:i + 1], kc[i:i + 1, :n], vc[i:i + 1, :n], causal)
        close(o[i], eo[0])
        close(lse[i], el[0])


@pytest.mark.parametrize("block_size", [16, 64])
def test_kvcache_paged_equals_dense_cache(backend, rng, block_size):
    q, kc, vc = _cache_case(rng, cap=128)
    kn, vn = randn(rng, 3, 2, 2, 16), randn(rng, 3, 2, 2, 16)
    lens = np.array([100, 0, 33], np.int32)
    kp, table = _paged(rng, kc, block_size, lens)
    vp = np.empty_like(kp)
    per = table.shape[1]
    for i in range(3):
        for j in range(per):
            vp[table[i, j]] = vc[i, j * block_size:(j + 1) * block_size]
    got = serving(backend, polyattn.flash_attn_with_kvcache, q, kp, vp, kn, vn,
                  cache_seqlens=lens, block_table=table, causal=True)
    want = polyattn.flash_attn_with_kvcache(q, kc, vc, kn, vn, cache_seqlens=lens, causal=True)
    close(got, want)
    for i in range(3):  # the appended rows landed in the sequence's blocks
        for r in range(2):
            at = lens[i] + r
            blk, row = table[i, at // block_size], at % block_size
            np.testing.assert_array_equal(kp[blk, row], kn[i, r])
            np.testing.assert_array_equal(vp[blk, row], vn[i, r])
            np.testing.assert_array_equal(kc[i, at], kn[i, r])


def test_kvcache_append_equals_concatenated_keys(backend, rng):
    q, kc, vc = _cache_case(rng, hq=6, hkv=2)
    kn, vn = randn(rng, 3, 3, 2, 16), randn(rng, 3, 3, 2, 16)
    lens = np.array([0, 9, 37], np.int32)
    before_k, before_v = kc.copy(), vc.copy()
    o, lse = serving(backend, polyattn.flash_attn_with_kvcache, q, kc, vc, kn, vn,
                     cache_seqlens=lens, causal=True, return_softmax_lse=True)
    np.testing.assert_array_equal(lens, [0, 9, 37])  # not advanced
    for i, n in enumerate(lens):
        keys = np.concatenate([before_k[i:i + 1, :n], kn[i:i + 1]], axis=1)
        values = np.concatenate([before_v[i:i + 1, :n], vn[i:i + 1]], axis=1)
        eo, el = dense(q[i:i + 1], keys, values, True)
        close(o[i], eo[0])
        close(lse[i], el[0])
        np.testing.assert_array_equal(kc[i, n:n + 3], kn[i])
        # rows outside [n, n + 3) are untouched
        np.testing.assert_array_equal(kc[i, :n], before_k[i, :n])
        np.testing.assert_array_equal(vc[i, n + 3:], before_v[i, n + 3:])


def test_kvcache_whole_cache_int_lengths_and_empty(rng):
    q, kc, vc = _cache_case(rng, cap=6)
    close(polyattn.flash_attn_with_kvcache(q, kc, vc), dense(q, kc, vc, False)[0])
    close(polyattn.flash_attn_with_kvcache(q, kc, vc, cache_seqlens=4),
          dense(q, kc[:, :4], vc[:, :4], False)[0])
    o, lse = polyattn.flash_attn_with_kvcache(q, kc, vc, cache_seqlens=0,
                                              return_softmax_lse=True)
    assert (o == 0).all() and np.isneginf(lse).all()


def test_kvcache_decode_steps_repeat_from_pointers(rng, monkeypatch):
    """Decode: the same signature each step (the first call is recorded, later ones run
    from the data pointers alone), appending one row per step; every step equals attending
    to the keys so far."""
    from polyattn import _kvcache, _runtime
    polyattn.clear_caches()
    checked = _kvcache.run
    b, hkv, d = 2, 2, 8
    kc, vc = np.zeros((b, 20, hkv, d), np.float32), np.zeros((b, 20, hkv, d), np.float32)
    lens = np.array([3, 0], np.int32)
    kc[0, :3], vc[0, :3] = randn(rng, 3, hkv, d), randn(rng, 3, hkv, d)
    for step in range(4):
        q, kn, vn = randn(rng, b, 1, 4, d), randn(rng, b, 1, hkv, d), randn(rng, b, 1, hkv, d)
        o = polyattn.flash_attn_with_kvcache(q, kc, vc, kn, vn, cache_seqlens=lens, causal=True)
        monkeypatch.setattr(_kvcache, "run", None)  # later steps must not take it
        for i in range(b):
            n = lens[i] + 1
            close(o[i], dense(q[i:i + 1], kc[i:i + 1, :n], vc[i:i + 1, :n], True)[0][0])
            np.testing.assert_array_equal(kc[i, lens[i]], kn[i, 0])
        lens += 1
    monkeypatch.setattr(_kvcache, "run", checked)
    assert sum(key[0] == "kvcache" for key in _runtime.fast_entries) == 1
    assert sum(key[19] is not None for key in _runtime._plans) == 1  # one serving plan
    # The repeat skips the Python checks; the library still refuses a bad length.
    with pytest.raises(polyattn.InvalidArgumentError, match=r"seqused_kv\[0\] is 23"):
        polyattn.flash_attn_with_kvcache(q, kc, vc, kn, vn, cache_seqlens=lens + 16,
                                         causal=True)


def test_kvcache_gqa_and_variants(rng):
    q, kc, vc = _cache_case(rng, hq=8, hkv=2)
    lens = np.array([30, 5, 12], np.int32)
    slopes = np.linspace(0.1, 0.8, 8).astype(np.float32)
    o = polyattn.flash_attn_with_kvcache(q, kc, vc, cache_seqlens=lens, causal=True,
                                         window_size=(4, 0), softcap=5.0, alibi_slopes=slopes)
    for i, n in enumerate(lens):
        eo, _ = dense(q[i:i + 1], kc[i:i + 1, :n], vc[i:i + 1, :n], True, window_size=(4, 0),
                      softcap=5.0, alibi_slopes=slopes)
        close(o[i], eo[0])


# ---- errors -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["rotary_cos", "rotary_sin", "cache_batch_idx",
                                  "cache_leftpad"])
def test_kvcache_unsupported_arguments_are_named(rng, name):
    q, kc, vc = _cache_case(rng)
    with pytest.raises(NotImplementedError, match=name):
        polyattn.flash_attn_with_kvcache(q, kc, vc, **{name: np.zeros(3, np.int32)})


def test_kvcache_errors_name_the_argument(rng):
    q, kc, vc = _cache_case(rng, cap=32)
    table = np.array([[0, 1], [2, 3], [4, 5]], np.int32)
    with pytest.raises(ValueError, match="block_table: 2 rows"):
        polyattn.flash_attn_with_kvcache(q, kc, vc, block_table=table[:2], cache_seqlens=1)
    with pytest.raises(polyattn.InvalidArgumentError, match="block_size"):
        polyattn.flash_attn_with_kvcache(q, kc[:, :8], vc[:, :8], block_table=table,
                                         cache_seqlens=1)
    blocks = randn(rng, 6, 16, 2, 16)
    bad = table.copy()
    bad[1, 0] = 9
    with pytest.raises(polyattn.InvalidArgumentError, match=r"block_table\[1\]\[0\] is 9"):
        polyattn.flash_attn_with_kvcache(q, blocks, blocks, block_table=bad, cache_seqlens=3)
    with pytest.raises(ValueError, match=r"cache_seqlens\[0\] = 40 plus 0 new tokens exceeds "
                                         r"the cache's 32"):
        polyattn.flash_attn_with_kvcache(q, blocks, blocks, block_table=table,
                                         cache_seqlens=np.array([40, 1, 1], np.int32))
    with pytest.raises(ValueError, match="num_splits: -1"):
        polyattn.flash_attn_with_kvcache(q, kc, vc, num_splits=-1)
    with pytest.raises(TypeError, match="cache_seqlens: dtype float32"):
        polyattn.flash_attn_with_kvcache(q, kc, vc, cache_seqlens=np.ones(3, np.float32))
    with pytest.raises(ValueError, match="heads: q has 4, not a multiple of k_cache's 3"):
        polyattn.flash_attn_with_kvcache(q, randn(rng, 3, 8, 3, 16), randn(rng, 3, 8, 3, 16))


def test_varlen_errors_name_the_argument(rng):
    q, k = randn(rng, 6, 2, 8), randn(rng, 6, 2, 8)
    cu = np.array([0, 3, 6], np.int32)
    with pytest.raises(ValueError, match="max_seqlen_k: -1 is negative"):
        polyattn.flash_attn_varlen_func(q, k, k, cu, cu, 3, -1)
    with pytest.raises(NotImplementedError, match="dropout_p"):
        polyattn.flash_attn_varlen_func(q, k, k, cu, cu, 3, 3, dropout_p=0.5)
    with pytest.raises(ValueError, match="block_table: 1 rows for 2 sequences"):
        polyattn.flash_attn_varlen_func(q, randn(rng, 2, 16, 2, 8), randn(rng, 2, 16, 2, 8),
                                        cu, cu, 3, 3, block_table=np.zeros((1, 1), np.int32))
