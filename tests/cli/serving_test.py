"""polyattn run/explain with the serving layouts on the host backend: packed (varlen) queries
and keys, a dense KV cache, a paged one with a shuffled block table, KV append with the
updated caches written out, each against a float64 NumPy computation of every sequence as
its own dense problem; the layout and split count in run's and explain's output; and every
bad input (exit 2, one stderr line naming the argument, no output file).
    serving_test.py POLYATTN WORKDIR"""
import json
import os
import subprocess
import sys

import numpy as np

polyattn, work = sys.argv[1:3]
os.chdir(work)
failures, checks = [], 0
rng = np.random.default_rng(22)
HQ, HKV, D = 4, 2, 16
OUTS = ("o.npy", "l.npy", "ok.npy", "ov.npy", "dq.npy", "dk.npy", "dv.npy")


def save(name, a):
    np.save(name, a)
    return name


def rand(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def check(cond, what):
    global checks
    checks += 1
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def run(*args):
    p = subprocess.run([polyattn, "run", "--backend", "host", *args], capture_output=True,
                       text=True)
    return p.returncode, p.stdout, p.stderr


def dense(q, k, v, mask, scale=None):
    """One sequence: q [HQ, lq, d], k/v [HKV, lk, d] -> O [HQ, lq, dv], LSE [HQ, lq] (float64)."""
    q, k, v = (x.astype(np.float64) for x in (q, k, v))
    lq, lk = q.shape[1], k.shape[1]
    g = q.shape[0] // k.shape[0]
    k, v = np.repeat(k, g, axis=0), np.repeat(v, g, axis=0)
    s = np.einsum("hid,hjd->hij", q, k) * (scale or 1 / np.sqrt(q.shape[2]))
    i, j = np.arange(lq)[:, None], np.arange(lk)[None, :]
    diag = i if mask == "top-left" else i + lk - lq
    if mask != "none":
        s = np.where(j <= diag, s, -np.inf)
    m = s.max(axis=2, keepdims=True) if lk else np.full((q.shape[0], lq, 1), -np.inf)
    m = np.where(np.isfinite(m), m, 0)
    p = np.exp(s - m)
    den = p.sum(axis=2, keepdims=True)
    o = np.einsum("hij,hjd->hid", p, v) / np.where(den > 0, den, 1)
    lse = np.where(den[..., 0] > 0, np.log(np.where(den[..., 0] > 0, den[..., 0], 1)) + m[..., 0],
                   -np.inf)
    return o, lse


def close(got, want, what, tol=2e-5):
    ok = got.shape == want.shape and np.allclose(got, want, rtol=tol, atol=tol)
    if not ok and got.shape == want.shape:
        what += " (max err %g)" % np.nanmax(np.abs(got - want))
    elif not ok:
        what += " (shape %s, expected %s)" % (got.shape, want.shape)
    check(ok, what)


def offsets(lengths, lead=0):
    return np.concatenate([[lead], lead + np.cumsum(lengths)]).astype(np.int32)


# ---- varlen queries and keys: lengths with an empty sequence, padding rows around ----
LQ, LK = [5, 0, 3, 7], [6, 4, 0, 9]
cu_q, cu_k = offsets(LQ, 1), offsets(LK, 2)
TQ, TK = int(cu_q[-1]) + 2, int(cu_k[-1]) + 1
q, k, v = rand(1, HQ, TQ, D), rand(1, HKV, TK, D), rand(1, HKV, TK, D)
save("q.npy", q), save("k.npy", k), save("v.npy", v)
save("cu_q.npy", cu_q), save("cu_k.npy", cu_k.astype(np.int64))  # int64 files are narrowed
for mask in ("bottom-right", "top-left", "none"):
    what = "varlen q/kv %s" % mask
    rc, out, err = run("--q", "q.npy", "--k", "k.npy", "--v", "v.npy", "--out", "o.npy", "--lse",
                       "l.npy", "--cu-seqlens-q", "cu_q.npy", "--cu-seqlens-kv", "cu_k.npy",
                       "--causal", mask, "--json")
    check(rc == 0, "%s: exit %d: %s" % (what, rc, err))
    if rc:
        continue
    o, lse = np.load("o.npy"), np.load("l.npy")
    check(o.shape == q.shape and lse.shape == (HQ, TQ), what + ": output shapes")
    for b in range(len(LQ)):
        rq, rk = slice(cu_q[b], cu_q[b + 1]), slice(cu_k[b], cu_k[b + 1])
        wo, wl = dense(q[0][:, rq], k[0][:, rk], v[0][:, rk], mask)
        close(o[0][:, rq], wo, "%s: O of sequence %d" % (what, b))
        close(lse[:, rq], wl, "%s: LSE of sequence %d" % (what, b))
    j = json.loads(out)
    check(j["layout"] == {"varlen_q": True, "kv_layout": "varlen", "kv_block_size": 0}
          and j["num_splits"] >= 1 and j["num_seqs"] == 4, what + ": JSON layout: " + out)
    for f in ("o.npy", "l.npy"):
        os.remove(f)

# The text line names the layout and the split count.
rc, out, err = run("--q", "q.npy", "--k", "k.npy", "--v", "v.npy", "--out", "o.npy",
                   "--cu-seqlens-q", "cu_q.npy", "--cu-seqlens-kv", "cu_k.npy", "--algo", "flash",
                   "--num-splits", "3", "--max-seqlen-q", "7", "--max-seqlen-kv", "9")
check(rc == 0 and "varlen q, kv varlen" in out and "split" in out, "run text layout: " + out + err)
if rc == 0:
    o = np.load("o.npy")
    for b in range(len(LQ)):
        rq, rk = slice(cu_q[b], cu_q[b + 1]), slice(cu_k[b], cu_k[b + 1])
        close(o[0][:, rq], dense(q[0][:, rq], k[0][:, rk], v[0][:, rk], "none")[0],
              "flash --num-splits 3: O of sequence %d" % b)
    os.remove("o.npy")

# ---- dense q (batch 3, 2 queries) on a dense cache with an append; caches written out ----
B, SQ, CAP, NEW = 3, 2, 12, 2
used = np.array([4, 0, 9], np.int32)
qc, kc, vc = rand(B, HQ, SQ, D), rand(B, HKV, CAP, D), rand(B, HKV, CAP, D)
kn, vn = rand(B, HKV, NEW, D), rand(B, HKV, NEW, D)
for n, a in (("qc", qc), ("kc", kc), ("vc", vc), ("kn", kn), ("vn", vn)):
    save(n + ".npy", a)
save("used.npy", used)
rc, out, err = run("--q", "qc.npy", "--k", "kc.npy", "--v", "vc.npy", "--out", "o.npy",
                   "--cache-seqlens", "used.npy", "--k-new", "kn.npy", "--v-new", "vn.npy",
                   "--out-k", "ok.npy", "--out-v", "ov.npy", "--causal", "bottom-right",
                   "--check-inputs", "--json")
check(rc == 0, "cache append: exit %d: %s" % (rc, err))
if rc == 0:
    o, ok, ov = np.load("o.npy"), np.load("ok.npy"), np.load("ov.npy")
    k2, v2 = kc.copy(), vc.copy()
    for b in range(B):
        k2[b][:, used[b]:used[b] + NEW], v2[b][:, used[b]:used[b] + NEW] = kn[b], vn[b]
    close(ok, k2, "cache append: --out-k", 0)
    close(ov, v2, "cache append: --out-v", 0)
    for b in range(B):
        n = used[b] + NEW
        close(o[b], dense(qc[b], k2[b][:, :n], v2[b][:, :n], "bottom-right")[0],
              "cache append: O of sequence %d" % b)
    check(json.loads(out)["layout"]["kv_layout"] == "cache", "cache append: JSON layout")
    for f in ("o.npy", "ok.npy", "ov.npy"):
        os.remove(f)

# ---- varlen q on a paged cache (block 16, shuffled table, a shared prefix block) ----
BS, NB, MB = 16, 9, 3
seq_used = np.array([20, 3, 35, 16], np.int32)
LQP = [2, 1, 0, 3]
cu_p = offsets(LQP)
qp = rand(1, HQ, int(cu_p[-1]), D)
kp, vp = rand(NB, HKV, BS, D), rand(NB, HKV, BS, D)
perm = rng.permutation(NB)
table = np.full((4, MB), -1, np.int32)
nxt = 0
for b in range(4):
    for n in range((seq_used[b] + 1 + BS - 1) // BS):  # room for one appended row
        table[b, n] = perm[nxt]
        nxt += 1
table[3, 0] = table[0, 0]  # sequence 3 shares sequence 0's first block (read only)
knp, vnp = rand(4, HKV, 1, D), rand(4, HKV, 1, D)
for n, a in (("qp", qp), ("kp", kp), ("vp", vp), ("knp", knp), ("vnp", vnp)):
    save(n + ".npy", a)
save("cu_p.npy", cu_p), save("used_p.npy", seq_used), save("table.npy", table)


def gather(cache, b, n):
    """Keys 0..n-1 of sequence b from the paged cache: [HKV, n, d]."""
    return np.concatenate([cache[table[b, j // BS]][:, j % BS:j % BS + 1] for j in range(n)],
                          axis=1) if n else cache[0][:, :0]


for append in (False, True):
    what = "paged%s" % (" append" if append else "")
    extra = ["--k-new", "knp.npy", "--v-new", "vnp.npy", "--out-k", "ok.npy"] if append else []
    if append:  # the shared block is read by two sequences: append only where nothing is shared
        save("used_a.npy", np.array([21, 3, 35, 17], np.int32) - 1)
    rc, out, err = run("--q", "qp.npy", "--k", "kp.npy", "--v", "vp.npy", "--out", "o.npy",
                       "--cu-seqlens-q", "cu_p.npy", "--cache-seqlens",
                       "used_a.npy" if append else "used_p.npy", "--block-table", "table.npy",
                       "--causal", "bottom-right", "--json", *extra)
    check(rc == 0, "%s: exit %d: %s" % (what, rc, err))
    if rc:
        continue
    o = np.load("o.npy")
    kc2, vc2 = kp.copy(), vp.copy()
    u = np.load("used_a.npy") if append else seq_used
    if append:
        for b in range(4):
            j = int(u[b])
            kc2[table[b, j // BS]][:, j % BS] = knp[b][:, 0]
            vc2[table[b, j // BS]][:, j % BS] = vnp[b][:, 0]
        close(np.load("ok.npy"), kc2, what + ": --out-k", 0)
        os.remove("ok.npy")
    for b in range(4):
        n = int(u[b]) + (1 if append else 0)
        rq = slice(cu_p[b], cu_p[b + 1])
        close(o[0][:, rq], dense(qp[0][:, rq], gather(kc2, b, n), gather(vc2, b, n),
                                 "bottom-right")[0], "%s: O of sequence %d" % (what, b))
    j = json.loads(out)
    check(j["layout"] == {"varlen_q": True, "kv_layout": "paged", "kv_block_size": BS},
          what + ": JSON layout " + json.dumps(j.get("layout")))
    os.remove("o.npy")

# ---- explain: the layout and the split count ----
for extra, want in ((["--kv-layout", "paged", "--block-size", "32"], "kv paged (block size 32)"),
                    (["--varlen-q", "--kv-layout", "varlen"], "varlen q, kv varlen"),
                    (["--kv-layout", "cache", "--seq-new", "1", "--num-splits", "1"],
                     "dense q, kv cache, 1 split")):
    base = ["explain", "--backend", "host", "--batch", "3", "--heads", "4", "--heads-kv", "2",
            "--seq-q", "2", "--seq-kv", "40", "--head-dim", "16", "--causal", "bottom-right"]
    p = subprocess.run([polyattn, *base, *extra], capture_output=True, text=True)
    check(p.returncode == 0 and "\nlayout: " in p.stdout and want in p.stdout,
          "explain %s: %s%s" % (extra, p.stdout, p.stderr))
    p = subprocess.run([polyattn, *base, *extra, "--json"], capture_output=True, text=True)
    try:
        j = json.loads(p.stdout)
        ok = "layout" in j and isinstance(j["num_splits"], int) and j["num_splits"] >= 1
    except ValueError:
        ok = False
    check(p.returncode == 0 and ok, "explain --json %s: %s%s" % (extra, p.stdout, p.stderr))

# ---- bad inputs: exit 2, one line naming the argument, nothing written ----
save("cu_bad.npy", np.array([0, 4, 2, 8, 10], np.int32))
save("cu_past.npy", np.array([0, 4, 6, 8, TQ + 1], np.int32))
save("cu_f.npy", cu_q.astype(np.float32))
save("cu_short.npy", cu_q[:3])
save("cu_2d.npy", cu_q.reshape(1, -1))
save("used_big.npy", np.array([20, 3, 49, 16], np.int32))
save("used_cap.npy", np.array([4, 11, 9], np.int32))  # 11 + 2 appended > 12
save("used_neg.npy", np.array([20, -1, 35, 16], np.int32))
save("table_bad.npy", np.where(table == table[2, 1], NB, table).astype(np.int32))
save("table_shape.npy", table[:3])
save("kn_bad.npy", rand(B, HKV, NEW, D + 1))
save("k17.npy", rand(NB, HKV, 17, D)), save("v17.npy", rand(NB, HKV, 17, D))
V = ["--q", "q.npy", "--k", "k.npy", "--v", "v.npy", "--out", "o.npy"]
P = ["--q", "qp.npy", "--k", "kp.npy", "--v", "vp.npy", "--out", "o.npy",
     "--cu-seqlens-q", "cu_p.npy", "--block-table", "table.npy"]
C = ["--q", "qc.npy", "--k", "kc.npy", "--v", "vc.npy", "--out", "o.npy",
     "--cache-seqlens", "used.npy"]
bad = [
    ("--cu-seqlens-q", "non-decreasing", V + ["--cu-seqlens-q", "cu_bad.npy"]),
    ("--cu-seqlens-q", "past", V + ["--cu-seqlens-q", "cu_past.npy"]),
    ("--cu-seqlens-q", "int32", V + ["--cu-seqlens-q", "cu_f.npy"]),
    ("--cu-seqlens-kv", "num_seqs", V + ["--cu-seqlens-q", "cu_q.npy", "--cu-seqlens-kv",
                                         "cu_short.npy"]),
    ("--cu-seqlens-q", "rank 1", V + ["--cu-seqlens-q", "cu_2d.npy"]),
    ("--cu-seqlens-q", "cannot open", V + ["--cu-seqlens-q", "missing.npy"]),
    ("--max-seqlen-q", "beyond", V + ["--cu-seqlens-q", "cu_q.npy", "--max-seqlen-q", "6"]),
    ("--max-seqlen-q", "needs --cu-seqlens-q", V + ["--max-seqlen-q", "6"]),
    ("--max-seqlen-kv", "needs", V + ["--max-seqlen-kv", "6"]),
    ("--k", "packed keys", C[:8] + ["--cu-seqlens-kv", "cu_k.npy"]),
    ("--q", "packed queries", C[:8] + ["--cu-seqlens-q", "cu_q.npy"]),
    ("--cache-seqlens", "beyond", P + ["--cache-seqlens", "used_big.npy"]),
    ("--cache-seqlens", "negative", P + ["--cache-seqlens", "used_neg.npy"]),
    ("--block-table", "outside", P[:10] + ["--cache-seqlens", "used_p.npy", "--block-table",
                                           "table_bad.npy"]),
    ("--block-table", "max_blocks_per_seq", P[:10] + ["--cache-seqlens", "used_p.npy",
                                                      "--block-table", "table_shape.npy"]),
    ("--block-table", "needs --cache-seqlens", P),
    ("--k", "multiple of 16", ["--q", "qp.npy", "--k", "k17.npy", "--v", "v17.npy", "--out",
                               "o.npy", "--cu-seqlens-q", "cu_p.npy", "--block-table",
                               "table.npy", "--cache-seqlens", "used_p.npy"]),
    ("--k-new", "head_dim", C + ["--k-new", "kn_bad.npy", "--v-new", "vn.npy"]),
    ("--k-new", "needs --v-new", C + ["--k-new", "kn.npy"]),
    ("--k-new", "needs --cache-seqlens", V + ["--k-new", "kn.npy", "--v-new", "vn.npy"]),
    ("--out-k", "needs --k-new", C + ["--out-k", "ok.npy"]),
    ("--cache-seqlens", "beyond the cache", C[:8] + ["--cache-seqlens", "used_cap.npy", "--k-new",
                                                    "kn.npy", "--v-new", "vn.npy"]),
    ("--cu-seqlens-kv", "not with --cache-seqlens", C + ["--cu-seqlens-kv", "cu_k.npy"]),
    ("--probs", "serving", V + ["--cu-seqlens-q", "cu_q.npy", "--probs", "l.npy"]),
    ("--num-splits", "integer", V + ["--num-splits", "-1"]),
    ("--out-k", "is the input --k-new", C + ["--k-new", "kn.npy", "--v-new", "vn.npy",
                                             "--out-k", "kn.npy"]),
    ("--grad-out", "inference only", C + ["--grad-out", "qc.npy", "--dq", "dq.npy", "--dk",
                                          "dk.npy", "--dv", "dv.npy"]),
]
for arg, text, args in bad:
    what = "bad %s (%s)" % (arg, text)
    rc, out, err = run(*args)
    lines = err.strip().splitlines()
    check(rc == 2 and len(lines) == 1 and arg in err and text in err and not out,
          "%s: exit %d, stderr %r" % (what, rc, err))
    left = [f for f in OUTS if os.path.exists(f)] + [f for f in os.listdir(".") if ".tmp." in f]
    check(not left, "%s: outputs left: %s" % (what, left))
    for f in left:
        os.remove(f)

print("serving: %d checks, %d failures" % (checks, len(failures)))
sys.exit(1 if failures else 0)
