"""polyattn run/explain with the score variants: each flag against the float64 reference of
python/tests/reference.py, the backward's --dbias/--dsinks, a case checked by hand, and every
bad input (exit 2, one stderr line naming the argument, no output file).
    variants_test.py POLYATTN WORKDIR REPO_ROOT"""
import json
import os
import subprocess
import sys

import numpy as np

polyattn, work, root = sys.argv[1:4]
sys.path.insert(0, os.path.join(root, "python", "tests"))
import reference as ref  # noqa: E402

os.chdir(work)
failures, checks = [], 0
rng = np.random.default_rng(11)
B, HQ, HKV, SQ, SKV, D = 2, 4, 2, 9, 13, 16


def save(name, a):
    np.save(name, a)
    return name


q, k, v = (save(n, rng.standard_normal(s).astype(np.float32)) for n, s in
           (("q.npy", (B, HQ, SQ, D)), ("k.npy", (B, HKV, SKV, D)), ("v.npy", (B, HKV, SKV, D))))
qa, ka, va = (np.load(x) for x in (q, k, v))
save("do.npy", rng.standard_normal((B, HQ, SQ, D)).astype(np.float32))
save("slopes.npy", (2.0 ** -np.arange(1, HQ + 1)).astype(np.float32))
save("slopes_bh.npy", rng.random((B, HQ)).astype(np.float32))
save("bias.npy", rng.standard_normal((B, HQ, SQ, SKV)).astype(np.float32))
save("bias_h.npy", rng.standard_normal((1, HQ, SQ, SKV)).astype(np.float32))
save("bias_2d.npy", rng.standard_normal((SQ, SKV)).astype(np.float32))
save("mask.npy", rng.random((B, 1, SQ, SKV)) > 0.3)
save("mask_u8.npy", (rng.random((SQ, SKV)) > 0.3).astype(np.uint8))
save("sinks.npy", rng.standard_normal(HQ).astype(np.float32))
OUTS = ("o.npy", "l.npy", "dq.npy", "dk.npy", "dv.npy", "db.npy", "ds.npy")


def run(*args):
    return subprocess.run([polyattn, *args], capture_output=True, text=True)


def fail(msg):
    failures.append(msg)
    print("FAIL:", msg)


def good(name, flags, ref_args, mask=None, backward=False, tol=2e-5, extra=()):
    global checks
    checks += 1
    for f in OUTS:
        if os.path.exists(f):
            os.remove(f)
    args = ["run", "--q", q, "--k", k, "--v", v, "--out", "o.npy", "--lse", "l.npy",
            "--backend", "host", *flags, *extra]
    if mask:
        args += ["--causal", mask.split("-", 1)[1]]
    if backward:
        args += ["--grad-out", "do.npy", "--dq", "dq.npy", "--dk", "dk.npy", "--dv", "dv.npy"]
        if "bias" in ref_args:
            args += ["--dbias", "db.npy"]
        if "sinks" in ref_args:
            args += ["--dsinks", "ds.npy"]
    r = run(*args)
    if r.returncode != 0:
        return fail(f"{name}: exit {r.returncode}: {r.stderr.strip()}")
    want_o, want_lse, _ = ref.forward_variants(qa, ka, va, mask, **ref_args)
    lse = np.load("l.npy")
    same = lse == want_lse  # -inf on fully masked rows
    lse_err = np.abs(np.subtract(lse, want_lse, where=~same, out=np.zeros_like(want_lse)))
    err = max(np.abs(np.load("o.npy") - want_o).max(), np.nan_to_num(lse_err, nan=1.0).max())
    if not err <= tol:
        fail(f"{name}: forward error {err:.3g} > {tol}")
    if backward:
        d_o = np.load("do.npy")
        want = ref.backward_variants(qa, ka, va, d_o, mask, **ref_args)
        for f, w in zip(("dq.npy", "dk.npy", "dv.npy", "db.npy", "ds.npy"), want):
            if w is None:
                continue
            e = np.abs(np.load(f) - w).max()
            if not e <= 1e-4:
                fail(f"{name}: {f} error {e:.3g}")


L = np.load
for mask in (None, "causal-top-left", "causal-bottom-right"):
    m = mask or "none"
    good(f"window {m}", ["--window", "3,1"], {"window": (3, 1)}, mask)
    good(f"window -1 {m}", ["--window", "-1,2"], {"window": (-1, 2)}, mask)
    good(f"softcap {m}", ["--softcap", "0.8", "--scale", "1"], {"softcap": 0.8, "scale": 1.0}, mask)
    good(f"alibi {m}", ["--alibi", "slopes.npy"], {"alibi_slopes": L("slopes.npy")}, mask)
    good(f"alibi per batch {m}", ["--alibi", "slopes_bh.npy"],
         {"alibi_slopes": L("slopes_bh.npy")}, mask)
    good(f"bias {m}", ["--bias", "bias.npy"], {"bias": L("bias.npy")}, mask)
    good(f"sinks {m}", ["--sinks", "sinks.npy"], {"sinks": L("sinks.npy")}, mask)
    good(f"mask {m}", ["--mask", "mask.npy"], {"attn_mask": L("mask.npy")}, mask)
    good(f"gpt-oss mix {m}", ["--window", "4,0", "--softcap", "2", "--sinks", "sinks.npy"],
         {"window": (4, 0), "softcap": 2.0, "sinks": L("sinks.npy")}, mask)
    good(f"backward {m}", ["--window", "5,2", "--softcap", "3", "--alibi", "slopes.npy",
                           "--bias", "bias_h.npy", "--sinks", "sinks.npy"],
         {"window": (5, 2), "softcap": 3.0, "alibi_slopes": L("slopes.npy"),
          "bias": L("bias_h.npy"), "sinks": L("sinks.npy")}, mask, backward=True)
good("bias 2d broadcast", ["--bias", "bias_2d.npy"], {"bias": L("bias_2d.npy")})
good("backward bias 2d", ["--bias", "bias_2d.npy"], {"bias": L("bias_2d.npy")}, backward=True)
good("uint8 mask", ["--mask", "mask_u8.npy"], {"attn_mask": L("mask_u8.npy")})
good("flash", ["--window", "2,2", "--alibi", "slopes.npy", "--sinks", "sinks.npy"],
     {"window": (2, 2), "alibi_slopes": L("slopes.npy"), "sinks": L("sinks.npy")},
     "causal-bottom-right", extra=["--algo", "flash"])
bf = np.load("bias.npy").astype(np.float16).astype(np.float64)
good("bias f16", ["--bias", "bias.npy", "--bias-dtype", "f16"], {"bias": bf})

# By hand: 1x1x1x2, q = 0 so both scores are 0, sink 0: O = (3 + 6) / 3 = 3, LSE = log 3.
checks += 1
save("hq.npy", np.zeros((1, 1, 1, 1), np.float32))
save("hk.npy", np.ones((1, 1, 2, 1), np.float32))
save("hv.npy", np.array([3, 6], np.float32).reshape(1, 1, 2, 1))
save("hs.npy", np.zeros(1, np.float32))
r = run("run", "--q", "hq.npy", "--k", "hk.npy", "--v", "hv.npy", "--out", "o.npy", "--lse",
        "l.npy", "--sinks", "hs.npy", "--backend", "host")
if r.returncode != 0 or abs(float(L("o.npy").ravel()[0]) - 3.0) > 1e-6 or \
        abs(float(L("l.npy").ravel()[0]) - np.log(3.0)) > 1e-6:
    fail(f"sinks by hand: {r.returncode} {r.stderr.strip()}")

# The JSON report and explain show the variants.
checks += 1
r = run("run", "--q", q, "--k", k, "--v", v, "--out", "o.npy", "--backend", "host", "--json",
        "--window", "3,0", "--softcap", "30", "--alibi", "slopes.npy", "--bias", "bias_h.npy",
        "--bias-dtype", "bf16", "--mask", "mask.npy", "--sinks", "sinks.npy")
try:
    var = json.loads(r.stdout)["variants"]
    assert var == {"window": [3, 0], "softcap": 30, "alibi": "per-head",
                   "bias": {"dtype": "bf16", "shape": [1, HQ, SQ, SKV]},
                   "attn_mask": {"shape": [B, 1, SQ, SKV]}, "sinks": True}, var
except Exception as e:  # noqa: BLE001
    fail(f"run --json variants: {e}: {r.stdout} {r.stderr}")
checks += 1
ex = ["explain", "--batch", "2", "--heads", "4", "--heads-kv", "2", "--seq-q", "64",
      "--head-dim", "32", "--backend", "host"]
r = run(*ex, "--window", "8,0", "--softcap", "30", "--alibi", "per-batch-head", "--bias", "1,4",
        "--bias-dtype", "f16", "--mask", "2,1", "--sinks")
if r.returncode != 0 or "variants: window (8, 0), softcap 30, alibi per-batch-head, bias f16 " \
        "[1, 4, 64, 64], attn_mask [2, 1, 64, 64], sinks" not in r.stdout:
    fail(f"explain text: {r.returncode} {r.stdout} {r.stderr}")
checks += 1
r1 = run(*ex, "--window", "8,0", "--causal", "bottom-right", "--json")
r2 = run(*ex, "--causal", "bottom-right", "--json")
try:
    j1, j2 = json.loads(r1.stdout), json.loads(r2.stdout)
    assert j1["problem"]["variants"]["window"] == [8, 0]
    assert j1["flops"] < j2["flops"], (j1["flops"], j2["flops"])
except Exception as e:  # noqa: BLE001
    fail(f"explain --json window: {e}: {r1.stdout} {r1.stderr}")

# Bad input: exit 2, one line naming the argument, nothing written.
save("slopes3.npy", np.ones(3, np.float32))
save("bias_bad.npy", np.ones((3, HQ, SQ, SKV), np.float32))
save("bias_f8.npy", np.ones((SQ, SKV), np.float64))
save("mask_f4.npy", np.ones((SQ, SKV), np.float32))
save("mask_shape.npy", np.ones((SQ, SKV + 1), bool))
save("sinks5.npy", np.ones(HQ + 1, np.float32))
save("sinks_f8.npy", np.ones(HQ, np.float64))
base = ["run", "--q", q, "--k", k, "--v", v, "--out", "o.npy", "--lse", "l.npy"]
bwd = ["--grad-out", "do.npy", "--dq", "dq.npy", "--dk", "dk.npy", "--dv", "dv.npy"]
bad = [
    ("--window", ["--window", "-2,0"]), ("--window", ["--window", "3"]),
    ("--window", ["--window", "a,b"]), ("--window", ["--window", "1,2,3"]),
    ("--softcap", ["--softcap", "nan"]), ("--softcap", ["--softcap", "-1"]),
    ("--softcap", ["--softcap", "1e40"]),
    ("--alibi", ["--alibi", "slopes3.npy"]), ("--alibi", ["--alibi", "bias.npy"]),
    ("--alibi", ["--alibi", "missing.npy"]),
    ("--bias", ["--bias", "bias_bad.npy"]), ("--bias", ["--bias", "bias_f8.npy"]),
    ("--bias", ["--bias", "slopes.npy"]),
    ("--bias-dtype", ["--bias", "bias.npy", "--bias-dtype", "f64"]),
    ("--bias-dtype", ["--bias-dtype", "f16"]),
    ("--mask", ["--mask", "mask_f4.npy"]), ("--mask", ["--mask", "mask_shape.npy"]),
    ("--sinks", ["--sinks", "sinks5.npy"]), ("--sinks", ["--sinks", "sinks_f8.npy"]),
    ("--dbias", ["--bias", "bias.npy", "--dbias", "db.npy"]),
    ("--dbias", ["--dbias", "db.npy", *bwd]), ("--dsinks", ["--dsinks", "ds.npy", *bwd]),
    ("--dsinks", ["--sinks", "sinks.npy", "--dsinks", "sinks.npy", *bwd]),
]
ex_bad = [("--window", ["--window", "-5,-1"]), ("--bias", ["--bias", "3,1"]),
          ("--bias", ["--bias", "1"]), ("--mask", ["--mask", "1,3"]),
          ("--alibi", ["--alibi", "slopes.npy"]), ("--softcap", ["--softcap", "inf"]),
          ("--bias-dtype", ["--bias-dtype", "f16"])]
for name, args in [(n, base + a) for n, a in bad] + [(n, ex + a) for n, a in ex_bad]:
    checks += 1
    for f in OUTS:
        if os.path.exists(f):
            os.remove(f)
    r = run(*args)
    lines = r.stderr.strip().splitlines()
    if r.returncode != 2 or len(lines) != 1 or name not in lines[0] or r.stdout:
        fail(f"bad {' '.join(args[9:] if args[0] == 'run' else args[-2:])}: exit "
             f"{r.returncode}, stderr {r.stderr!r}")
    left = [f for f in OUTS if os.path.exists(f)] + [f for f in os.listdir(".") if ".tmp." in f]
    if left:
        fail(f"bad {name}: left {left}")

# bench: every variant at once, validated against the host reference, in both alignments.
for causal in ("top-left", "bottom-right"):
    checks += 1
    r = run("bench", "--suite", "custom", "--shape", "2,4,2,37,53,40;1,2,1,64,32,32",
            "--causal", causal, "--backend", "host", "--reps", "2", "--warmup", "0",
            "--algo", "unfused,flash", "--dtype", "f32,bf16", "--window", "8,2", "--softcap",
            "5", "--alibi", "--bias", "--bias-dtype", "f16", "--sinks", "--json", "b.json")
    if r.returncode != 0 or "with window (8, 2), softcap 5, alibi, bias f16, sinks" not in \
            r.stdout or "8 measured, 0 skipped, 0 failed" not in r.stdout:
        fail(f"bench {causal}: exit {r.returncode}: {r.stdout[-600:]} {r.stderr}")
bench = ["bench", "--suite", "custom", "--shape", "1,2,2,16,16,16", "--backend", "host"]
for name, args in [("--window", ["--window", "x"]), ("--softcap", ["--softcap", "nan"]),
                   ("--bias-dtype", ["--bias-dtype", "f16"]),
                   ("--backward", ["--backward", "--sinks"])]:
    checks += 1
    r = run(*bench, *args)
    lines = r.stderr.strip().splitlines()
    if r.returncode != 2 or len(lines) != 1 or name not in lines[0]:
        fail(f"bench bad {args}: exit {r.returncode}, stderr {r.stderr!r}")

print(f"variants: {checks} checks, {len(failures)} failures")
sys.exit(1 if failures else 0)
