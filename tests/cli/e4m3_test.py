"""polyattn run/explain/bench with --dtype e4m3 on the host backend: raw e4m3 bytes (uint8
.npy) and float32 inputs with descales against a float64 NumPy computation on the decoded
values, --out-dtype, explain's output, a bench row, and every bad input (exit 2, one stderr
line naming the argument, no output file).
    e4m3_test.py POLYATTN WORKDIR"""
import json
import os
import subprocess
import sys

import numpy as np

polyattn, work = sys.argv[1:3]
os.chdir(work)
failures, checks = [], 0
rng = np.random.default_rng(26)


def check(cond, what):
    global checks
    checks += 1
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def decode(codes):
    """e4m3 codes -> float64 by the format's definition (bias 7, S.1111.111 NaN)."""
    c = codes.astype(np.int64)
    s, e, m = c >> 7, (c >> 3) & 15, c & 7
    v = np.where(e == 0, m / 8.0 * 2.0 ** -6, (1 + m / 8.0) * 2.0 ** (e - 7))
    v = np.where((e == 15) & (m == 7), np.nan, v)
    return np.where(s == 1, -v, v)


def codes(*shape):
    all_finite = np.array([c for c in range(256) if c & 0x7F != 0x7F], dtype=np.uint8)
    return rng.choice(all_finite, shape).astype(np.uint8)


def reference(q, k, v, mask="none"):
    g = q.shape[1] // k.shape[1]
    k, v = np.repeat(k, g, axis=1), np.repeat(v, g, axis=1)
    s = np.einsum("bhid,bhjd->bhij", q, k) * float(np.float32(1 / np.sqrt(q.shape[3])))
    lq, lk = q.shape[2], k.shape[2]
    i, j = np.arange(lq)[:, None], np.arange(lk)[None, :]
    if mask != "none":
        diag = i if mask == "top-left" else i + lk - lq
        s = np.where(j <= diag, s, -np.inf)
    m = s.max(axis=3, keepdims=True)
    p = np.exp(s - m)
    return np.einsum("bhij,bhjd->bhid", p, v) / p.sum(axis=3, keepdims=True)


def run(*args, cmd="run"):
    p = subprocess.run([polyattn, cmd, "--backend", "host", *args], capture_output=True,
                       text=True)
    return p.returncode, p.stdout, p.stderr


# Raw bytes with descales, GQA, odd sizes, causal; O in each output dtype.
q8, k8, v8 = codes(2, 4, 7, 24), codes(2, 2, 13, 24), codes(2, 2, 13, 9)
for name, a in (("q8.npy", q8), ("k8.npy", k8), ("v8.npy", v8)):
    np.save(name, a)
ds = (0.01, 0.004, 0.5)
want = reference(decode(q8) * ds[0], decode(k8) * ds[1], decode(v8) * ds[2], "bottom-right")
for out_dtype, tol in (("f32", 1e-6), ("f16", 1e-3), ("bf16", 8e-3), (None, 8e-3)):
    extra = ["--out-dtype", out_dtype] if out_dtype else []
    rc, out, err = run("--q", "q8.npy", "--k", "k8.npy", "--v", "v8.npy", "--out", "o.npy",
                       "--dtype", "e4m3", "--q-descale", str(ds[0]), "--k-descale", str(ds[1]),
                       "--v-descale", str(ds[2]), "--causal", "bottom-right", "--json", *extra)
    check(rc == 0, f"raw e4m3 run (out {out_dtype}): rc {rc}: {err}")
    if rc == 0:
        o = np.load("o.npy").astype(np.float64)
        err_max = np.max(np.abs(o - want) / (np.abs(want) + 1e-30))
        check(err_max <= tol, f"raw e4m3 (out {out_dtype}): relative error {err_max}")
        j = json.loads(out)
        check(j["dtype"] == "e4m3", f"json dtype {j['dtype']}")
        check(j.get("out_dtype") == (out_dtype or "bf16"), f"json out_dtype {j.get('out_dtype')}")
        os.remove("o.npy")

# float32 inputs round to e4m3 (nearest even) on the way in.
qf = rng.uniform(-3, 3, (1, 2, 5, 16)).astype(np.float32)
kf = rng.uniform(-3, 3, (1, 1, 6, 16)).astype(np.float32)
np.save("qf.npy", qf), np.save("kf.npy", kf)
grid = decode(np.arange(256, dtype=np.uint8))
finite = np.isfinite(grid)


def round_e4m3(x):
    x = x.astype(np.float64)
    d = np.abs(x[..., None] - grid[finite])
    return grid[finite][np.argmin(d, axis=-1)]  # no ties among uniform floats


rc, out, err = run("--q", "qf.npy", "--k", "kf.npy", "--v", "kf.npy", "--out", "of.npy",
                   "--dtype", "e4m3", "--out-dtype", "f32")
check(rc == 0, f"float32 e4m3 run: {err}")
if rc == 0:
    want = reference(round_e4m3(qf), round_e4m3(kf), round_e4m3(kf))
    got = np.load("of.npy")
    check(np.allclose(got, want, rtol=1e-6, atol=1e-7), "float32 inputs rounded to e4m3")

# explain: the dtypes shown; GPU backends are not asked here (host only).
rc, out, err = run("--batch", "1", "--heads", "2", "--seq-q", "33", "--head-dim", "64",
                   "--dtype", "e4m3", "--out-dtype", "f16", "--json", cmd="explain")
check(rc == 0, f"explain e4m3: {err}")
if rc == 0:
    p = json.loads(out)["problem"]
    check(p["dtype"] == "e4m3" and p["out_dtype"] == "f16", f"explain problem: {p}")

# bench: random e4m3 inputs, validated against the host reference.
rc, out, err = run("--suite", "custom", "--shape", "1,2,1,40,37,32,24", "--dtype", "e4m3",
                   "--algo", "unfused,flash", "--reps", "2", "--warmup", "0", "--json",
                   "bench.json", cmd="bench")
check(rc == 0, f"bench e4m3: rc {rc}: {err}")
if rc == 0:
    rows = json.load(open("bench.json"))["results"]
    check(len(rows) == 2, f"bench: {len(rows)} rows")
    for r in rows:
        check(r["dtype"] == "e4m3" and r["status"] == "ok" and r["rows_checked"] > 0,
              f"bench row: {r}")

# Bad inputs: exit 2, one line naming the argument, no output file.
np.save("big.npy", np.full((2, 4, 7, 24), 500, np.float32))
np.save("f64.npy", np.zeros((2, 4, 7, 24)))
base = ["--q", "q8.npy", "--k", "k8.npy", "--v", "v8.npy", "--out", "bad.npy"]
bad = [
    (["--q", "big.npy", "--k", "k8.npy", "--v", "v8.npy", "--out", "bad.npy", "--dtype", "e4m3"],
     "--q"),
    (["--q", "f64.npy", "--k", "k8.npy", "--v", "v8.npy", "--out", "bad.npy", "--dtype", "e4m3"],
     "--q"),
    (base, "--q"),  # uint8 without --dtype e4m3
    (base + ["--dtype", "e4m3", "--q-descale", "0"], "--q-descale"),
    (base + ["--dtype", "e4m3", "--k-descale", "-1"], "--k-descale"),
    (base + ["--dtype", "e4m3", "--v-descale", "inf"], "--v-descale"),
    (base + ["--dtype", "e4m3", "--v-descale", "1e39"], "--v-descale"),
    (base + ["--dtype", "f16", "--q-descale", "2"], "--q-descale"),
    (base + ["--dtype", "f16", "--out-dtype", "f32"], "--out-dtype"),
    (base + ["--dtype", "e4m3", "--out-dtype", "e4m3"], "--out-dtype"),
    (base + ["--dtype", "e4m3", "--grad-out", "q8.npy", "--dq", "a.npy", "--dk", "b.npy", "--dv",
             "c.npy"], "--grad-out"),
]
for args, name in bad:
    rc, out, err = run(*args)
    lines = err.strip().splitlines()
    check(rc == 2, f"{args}: rc {rc}, wanted 2 ({err.strip()})")
    check(len(lines) == 1 and name in lines[0], f"{args}: message {err!r} should name {name}")
    check(not any(os.path.exists(f) for f in ("bad.npy", "a.npy", "b.npy", "c.npy")),
          f"{args}: an output file was written")

print(f"e4m3_test: {checks} checks, {len(failures)} failures")
sys.exit(1 if failures else 0)
