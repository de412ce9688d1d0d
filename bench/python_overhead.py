#!/usr/bin/env python3
"""Host time of one polyattn Python call with a cached plan against the bare C call
(polyattn_forward through ctypes on the same plan and pre-wrapped buffers), at the decode
shape: batch 1, 1 query, 4096 keys, 32 heads, head_dim 128 (FlashAttention layout).

    PYTHONPATH=python POLYATTN_LIBRARY=build/lib/libpolyattn.so \\
        python3 bench/python_overhead.py [--array numpy|torch] [--device cpu|cuda] \\
        [--algo auto|unfused|fused|flash] [--repeats 5] [--json]

The bare call runs the plan the Python call's fast path holds, so both run the same
algorithm (printed).  On a GPU both calls only enqueue work, so `python - bare` is the
Python layer's cost.  On the host backend the forward computes synchronously (milliseconds
at the decode shape), so the Python layer is also measured directly: a step-by-step copy of
the fast path (the same functions, each part timed with perf_counter_ns) gives the time of
every part; their sum without the C call is `python_layer_us`.  `rest_us` is the real
call's median minus the bare call and every timed part: argument passing, the two
function calls and the bytecode between the parts.  Each figure is a median over
--iters calls; with --repeats N the run is repeated N times and the median of the N
medians is reported (the per-run medians too)."""
import argparse
import ctypes
import json
import os
import statistics
import time

import numpy as np


def arrays(args):
    shape_q = (1, 1, args.heads, args.head_dim)
    shape_kv = (1, args.seq_kv, args.heads, args.head_dim)
    if args.array == "torch":
        import torch
        dt = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
        return [torch.randn(s, dtype=dt, device=args.device) for s in (shape_q, shape_kv, shape_kv)]
    dt = {"f32": np.float32, "f16": np.float16}[args.dtype]
    rng = np.random.default_rng(0)
    return [rng.standard_normal(s).astype(dt) for s in (shape_q, shape_kv, shape_kv)]


def make_sync(args):
    if args.array == "torch" and args.device.startswith("cuda"):
        import torch
        return torch.cuda.synchronize
    return lambda: None


def median_us(fn, iters, sync):
    times = []
    clock = time.perf_counter_ns
    for _ in range(iters):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    sync()
    return statistics.median(times) / 1e3


PARTS = ("signature", "lookup", "output_alloc", "data_pointers", "buffer_lookups",
         "lock_and_workspace", "c_call")


def breakdown(q, k, v, args, run, iters, sync):
    """Medians (us) of each part of the fast path, timed one by one on a copy of its steps
    (api.flash_attn_func's signature and lookup, then _fast's runner), and the median
    per-call sum without the C call."""
    from polyattn import _fast
    from polyattn._fast import NO_WINDOW, sig, sig_q, window_key
    p = run.parts
    ctx, handle, ws_bytes, forward = p["ctx"], p["handle"], p["ws_bytes"], p["forward"]
    qf, kf, vf, of = p["data"]
    nq, nk, nv, no = p["nbytes"]
    alloc, wrapped, lock, entries = p["alloc"], ctx.wrapped, ctx.lock, _fast.entries
    backend, algo = args.backend, args.algo
    clock = time.perf_counter_ns
    t_clock = min(-clock() + clock() for _ in range(1000))  # one clock read
    samples = {name: [] for name in PARTS}
    layer = []
    for _ in range(iters):
        t0 = clock()
        key = ("flash", sig_q(q), sig(k), sig(v), None, None,
               window_key(NO_WINDOW), 0.0, None, False, 0.0, False, False, backend, None, algo)
        t1 = clock()
        found = entries.get(key)
        t2 = clock()
        o = alloc()
        t3 = clock()
        ptrs = (qf(q), kf(k), vf(v), of(o))
        t4 = clock()
        lock.acquire()
        t5 = clock()
        bufs = (wrapped(ptrs[0], nq), wrapped(ptrs[1], nk), wrapped(ptrs[2], nv),
                wrapped(ptrs[3], no))
        t6 = clock()
        ws = ctx.workspace_for(ws_bytes)
        t7 = clock()
        status = forward(handle, bufs[0], bufs[1], bufs[2], bufs[3], None, None, ws)
        t8 = clock()
        lock.release()
        t9 = clock()
        if found is not run or status:
            raise SystemExit(f"python_overhead: the step-by-step copy missed the fast path "
                             f"(entry found: {found is run}, status {status})")
        parts = (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t6 - t5,
                 (t5 - t4) + (t7 - t6) + (t9 - t8), t8 - t7)
        n_clocks = (1, 1, 1, 1, 1, 3, 1)
        for name, dt, n in zip(PARTS, parts, n_clocks):
            samples[name].append(max(dt - n * t_clock, 0))
        layer.append(sum(parts[:-1]) - 9 * t_clock)
    sync()
    return ({name: statistics.median(s) / 1e3 for name, s in samples.items()},
            statistics.median(layer) / 1e3)


def one_run(args, q, k, v, polyattn, sync):
    from polyattn import _fast, _lib, _runtime
    polyattn.clear_caches()
    call = {"backend": args.backend, "algo": args.algo}
    out = polyattn.flash_attn_func(q, k, v, **call)  # the checked path: plans, records
    out = polyattn.flash_attn_func(q, k, v, **call)  # the fast path
    sync()
    if len(_fast.entries) != 1:
        raise SystemExit("python_overhead: the call left no fast-path entry (a context that "
                         "copies arrays, or an array type without one)")
    run = next(iter(_fast.entries.values()))
    if run.parts is None:
        raise SystemExit("python_overhead: the fast path of this call is not the plain one")
    p = run.parts
    ctx = p["ctx"]
    # The bare C call: the fast path's plan (the same algorithm), buffers wrapped once.
    bufs = []
    for x, f, n in zip((q, k, v, out), p["data"], p["nbytes"]):
        b = ctypes.c_void_p()
        _lib.check(ctx.wrap(ctx.handle, f(x), n, ctypes.byref(b)), ctx.handle)
        bufs.append(b.value)
    ws = ctx.workspace_for(p["ws_bytes"])
    forward, handle = p["forward"], p["handle"]

    def bare():
        forward(handle, bufs[0], bufs[1], bufs[2], bufs[3], None, None, ws)

    def python_call():
        polyattn.flash_attn_func(q, k, v, backend=args.backend, algo=args.algo)

    iters = args.iters
    for fn in (bare, python_call):  # warm-up
        for _ in range(max(3, iters // 20)):
            fn()
    sync()
    t_bare = median_us(bare, iters, sync)
    t_python = median_us(python_call, iters, sync)
    parts, layer = breakdown(q, k, v, args, run, iters, sync)
    for b in bufs:
        _lib.lib.polyattn_buffer_free(b)
    info = _runtime.info_dict(p["plan"])
    return {"python_call_us": t_python, "bare_c_call_us": t_bare,
            "difference_us": t_python - t_bare, "python_layer_us": layer,
            "parts_us": parts,
            "rest_us": t_python - t_bare - sum(v for n, v in parts.items() if n != "c_call")}, \
        info["algo"], ctx.backend


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--array", choices=["numpy", "torch"], default="numpy")
    ap.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1)")
    ap.add_argument("--backend", default=None, help="host arrays: polyattn backend (host)")
    ap.add_argument("--algo", default="auto", choices=["auto", "unfused", "fused", "flash"])
    ap.add_argument("--dtype", choices=["f32", "f16", "bf16"], default=None)
    ap.add_argument("--seq-kv", type=int, default=4096)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--iters", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    gpu = args.device.startswith("cuda")
    args.dtype = args.dtype or ("f16" if gpu else "f32")
    args.iters = args.iters or (2000 if gpu else 30)

    import polyattn
    sync = make_sync(args)
    q, k, v = arrays(args)
    load_before = os.getloadavg()[0]
    runs = []
    for _ in range(args.repeats):
        res, algo, backend = one_run(args, q, k, v, polyattn, sync)
        runs.append(res)

    def med(get):
        return round(statistics.median(get(r) for r in runs), 2)

    result = {"array": args.array, "device": args.device, "backend": backend,
              "dtype": args.dtype, "algo": algo,
              "shape": f"batch 1, seq_q 1, seq_kv {args.seq_kv}, heads {args.heads}, "
                       f"head_dim {args.head_dim}",
              "iters": args.iters, "repeats": args.repeats,
              "load_avg_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
              "cpus": os.cpu_count()}
    for key in ("python_call_us", "bare_c_call_us", "difference_us", "python_layer_us",
                "rest_us"):
        result[key] = med(lambda r, key=key: r[key])
    result["parts_us"] = {n: med(lambda r, n=n: r["parts_us"][n]) for n in PARTS}
    if args.repeats > 1:
        result["per_run_python_layer_us"] = [round(r["python_layer_us"], 2) for r in runs]
        result["per_run_difference_us"] = [round(r["difference_us"], 2) for r in runs]
    result["goal_us"] = 15.0
    if args.json:
        print(json.dumps(result))
    else:
        for key, val in result.items():
            if key == "parts_us":
                for n, t in val.items():
                    print(f"{'part ' + n:>24}: {t}")
            else:
                print(f"{key:>24}: {val}")


if __name__ == "__main__":
    main()
