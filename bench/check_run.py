#!/usr/bin/env python3
"""Checks `polyattn run` outputs against a float64 NumPy reference.

    python3 bench/check_run.py --q Q.npy --k K.npy --v V.npy --out O.npy [--lse L.npy]
        [--probs P.npy] [--causal top-left|bottom-right] [--scale S] [--rtol R]

The reference computes softmax(Q K^T * scale + mask) V in float64 from the same float32
inputs, with grouped-query heads (query head h uses kv head h // (heads_q // heads_kv)) and
both causal alignments; a query that sees no key must give O = 0, LSE = -inf, P = 0.

Error measure (per output): max |got - ref| / max(max |ref|, 1e-30), i.e. the error relative
to the largest reference magnitude.  float32 storage of O already costs ~6e-8 of that, so the
default --rtol 1e-6 suits the host backend in f32; use ~2e-3 for f16 and ~2e-2 for bf16.
LSE is compared on finite entries by max |got - ref| / max(1, max |ref|); the positions of
-inf must match exactly.  Exit 0 within tolerance, 1 beyond it, 2 on bad input.
"""
import argparse
import sys

try:
    import numpy as np
except ImportError:
    sys.stderr.write("check_run.py: numpy is required (apt install python3-numpy)\n")
    sys.exit(77)


def reference(q, k, v, scale, causal):
    batch, heads_q, seq_q, head_dim = q.shape
    heads_kv, seq_kv = k.shape[1], k.shape[2]
    group = heads_q // heads_kv
    q64, k64, v64 = (x.astype(np.float64) for x in (q, k, v))
    k64 = np.repeat(k64, group, axis=1)
    v64 = np.repeat(v64, group, axis=1)
    s = np.einsum("bhqd,bhkd->bhqk", q64, k64) * scale
    i = np.arange(seq_q)[:, None]
    j = np.arange(seq_kv)[None, :]
    if causal == "top-left":
        visible = j <= i
    elif causal == "bottom-right":
        visible = j <= i + (seq_kv - seq_q)
    else:
        visible = np.ones((seq_q, seq_kv), dtype=bool)
    s = np.where(visible, s, -np.inf)
    row_max = s.max(axis=-1, keepdims=True)
    empty = ~visible.any(axis=-1)  # [seq_q]: queries that see no key
    row_max = np.where(np.isfinite(row_max), row_max, 0.0)
    e = np.exp(s - row_max)
    total = e.sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(total > 0, e / np.where(total > 0, total, 1.0), 0.0)
        lse = np.where(total[..., 0] > 0, np.log(np.where(total[..., 0] > 0, total[..., 0], 1.0))
                       + row_max[..., 0], -np.inf)
    o = np.einsum("bhqk,bhkd->bhqd", p, v64)
    return o, lse, p, empty


def rel_err(got, ref):
    denom = max(float(np.max(np.abs(ref))) if ref.size else 0.0, 1e-30)
    return float(np.max(np.abs(got.astype(np.float64) - ref))) / denom if ref.size else 0.0


def load(path, what):
    try:
        a = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - any load failure is bad input
        sys.stderr.write("check_run.py: %s: cannot load %s: %s\n" % (what, path, exc))
        sys.exit(2)
    if a.dtype != np.float32:
        sys.stderr.write("check_run.py: %s: dtype %s, expected float32 (%s)\n" % (what, a.dtype, path))
        sys.exit(2)
    return a


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name in ("q", "k", "v", "out"):
        ap.add_argument("--" + name, required=True)
    ap.add_argument("--lse")
    ap.add_argument("--probs")
    ap.add_argument("--causal", choices=["none", "top-left", "bottom-right"], default="none")
    ap.add_argument("--scale", type=float, default=0.0)
    ap.add_argument("--rtol", type=float, default=1e-6)
    a = ap.parse_args()

    q, k, v = load(a.q, "--q"), load(a.k, "--k"), load(a.v, "--v")
    scale = a.scale if a.scale > 0 else 1.0 / np.sqrt(q.shape[3])
    # The device sees scale as float32.
    scale = float(np.float32(scale))
    o_ref, lse_ref, p_ref, empty = reference(q, k, v, scale, a.causal)

    ok = True
    o = load(a.out, "--out")
    if o.shape != o_ref.shape:
        print("O: shape %s, expected %s" % (o.shape, o_ref.shape))
        return 1
    if not np.all(np.isfinite(o)):
        print("O: %d non-finite elements (first at %s)" % (np.count_nonzero(~np.isfinite(o)),
                                                          np.argwhere(~np.isfinite(o))[0].tolist()))
        ok = False
    err = rel_err(o, o_ref)
    masked_rows_zero = bool(np.all(o[:, :, empty, :] == 0)) if empty.any() else True
    print("O: max error %.3e of max |O| (rtol %.1e), %d fully masked rows%s"
          % (err, a.rtol, int(empty.sum()), "" if masked_rows_zero else " NOT ZERO"))
    ok = ok and err <= a.rtol and masked_rows_zero

    if a.lse:
        lse = load(a.lse, "--lse")
        if lse.shape != lse_ref.shape:
            print("LSE: shape %s, expected %s" % (lse.shape, lse_ref.shape))
            return 1
        ninf_ref = np.isneginf(lse_ref)
        ninf_ok = bool(np.array_equal(np.isneginf(lse), ninf_ref))
        fin = ~ninf_ref
        lse_err = 0.0
        if fin.any():
            got = lse[fin].astype(np.float64)
            if not np.all(np.isfinite(got)):
                lse_err = float("inf")
            else:
                lse_err = float(np.max(np.abs(got - lse_ref[fin]))) / max(1.0, float(np.max(np.abs(lse_ref[fin]))))
        print("LSE: max error %.3e (rtol %.1e), -inf positions %s" % (lse_err, a.rtol, "match" if ninf_ok else "DIFFER"))
        ok = ok and ninf_ok and lse_err <= a.rtol

    if a.probs:
        p = load(a.probs, "--probs")
        if p.shape != p_ref.shape:
            print("P: shape %s, expected %s" % (p.shape, p_ref.shape))
            return 1
        p_err = rel_err(p, p_ref) if np.all(np.isfinite(p)) else float("inf")
        print("P: max error %.3e of max P (rtol %.1e)" % (p_err, a.rtol))
        ok = ok and p_err <= a.rtol

    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
