#!/usr/bin/env python3
"""Host time of one polyattn Python call with a cached plan against the bare C call
(polyattn_forward through ctypes on the same plan and pre-wrapped buffers), at the decode
shape: batch 1, 1 query, 4096 keys, 32 heads, head_dim 128 (FlashAttention layout).

    PYTHONPATH=python POLYATTN_LIBRARY=build/lib/libpolyattn.so \\
        python3 bench/python_overhead.py [--array numpy|torch] [--device cpu|cuda] [--json]

On a GPU both calls only enqueue work, so `python - bare` is the Python layer's cost.  On the
host backend the forward computes synchronously (milliseconds), so the overhead is also
measured directly: the Python call's time minus the time spent inside polyattn_forward,
timed around the ctypes call."""
import argparse
import ctypes
import json
import statistics
import time

import numpy as np


def arrays(args):
    shape_q, shape_kv = (1, 1, args.heads, args.head_dim), (1, args.seq_kv, args.heads, args.head_dim)
    if args.array == "torch":
        import torch
        dt = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
        return [torch.randn(s, dtype=dt, device=args.device) for s in (shape_q, shape_kv, shape_kv)]
    dt = {"f32": np.float32, "f16": np.float16}[args.dtype]
    rng = np.random.default_rng(0)
    return [rng.standard_normal(s).astype(dt) for s in (shape_q, shape_kv, shape_kv)]


def sync(args):
    if args.array == "torch" and args.device.startswith("cuda"):
        import torch
        torch.cuda.synchronize()


def median_us(fn, iters, args):
    times = []
    for _ in range(iters):
        t0 = time.perf_counter_ns()
        fn()
        times.append(time.perf_counter_ns() - t0)
    sync(args)
    return statistics.median(times) / 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--array", choices=["numpy", "torch"], default="numpy")
    ap.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1)")
    ap.add_argument("--backend", default=None, help="host arrays: polyattn backend (host)")
    ap.add_argument("--dtype", choices=["f32", "f16", "bf16"], default=None)
    ap.add_argument("--seq-kv", type=int, default=4096)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--iters", type=int, default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    gpu = args.device.startswith("cuda")
    args.dtype = args.dtype or ("f16" if gpu else "f32")
    iters = args.iters or (2000 if gpu else 30)

    import polyattn
    from polyattn import _arrays, _dense, _lib, _runtime

    q, k, v = arrays(args)
    out = polyattn.flash_attn_func(q, k, v, backend=args.backend)  # plans and warms up
    sync(args)

    # The bare C call: the same plan, buffers wrapped once.
    dense = _dense.Dense("bshd", 0, None, args.backend, None, "auto")
    refs = [_arrays.ref(x, n) for x, n in ((q, "q"), (k, "k"), (v, "v"), (out, "out"))]
    views = [_dense.to_view(r, "bshd") for r in refs]
    ctx = _dense.resolve(refs[0], args.backend, None)
    if not ctx.zero_copy:
        raise SystemExit("python_overhead: needs a context that wraps arrays in place "
                         "(host backend with host arrays, or CUDA/HIP arrays)")
    plan = _runtime.plan(ctx, refs[0].dtype, *views, dense.scale, dense.mask, dense.algo)
    bufs = []
    for vw in views:
        b = ctypes.c_void_p()
        _lib.check(ctx.wrap(ctx.handle, vw.ptr, vw.nbytes(), ctypes.byref(b)), ctx.handle)
        bufs.append(b.value)
    ws = ctx.workspace_for(plan.info.workspace_bytes)
    forward = _lib.lib.polyattn_forward
    handle = plan.handle

    def bare():
        forward(handle, bufs[0], bufs[1], bufs[2], bufs[3], None, None, ws)

    def python_call():
        polyattn.flash_attn_func(q, k, v, backend=args.backend)

    for fn in (bare, python_call):  # warm-up
        for _ in range(max(3, iters // 20)):
            fn()
    sync(args)
    t_bare = median_us(bare, iters, args)
    t_python = median_us(python_call, iters, args)

    # Direct: the Python call minus the time inside polyattn_forward.
    inside = []

    class Timed:
        def __getattr__(self, name):
            return getattr(_lib.lib, name)

        @staticmethod
        def polyattn_forward(*a):
            t0 = time.perf_counter_ns()
            st = forward(*a)
            inside.append(time.perf_counter_ns() - t0)
            return st

    real_lib = _runtime.lib
    _runtime.lib = Timed()
    try:
        direct = []
        for _ in range(iters):
            t0 = time.perf_counter_ns()
            python_call()
            direct.append(time.perf_counter_ns() - t0 - inside[-1])
        sync(args)
    finally:
        _runtime.lib = real_lib
    t_direct = statistics.median(direct) / 1e3
    for b in bufs:
        _lib.lib.polyattn_buffer_free(b)

    result = {"array": args.array, "device": args.device, "backend": ctx.backend,
              "dtype": args.dtype, "algo": _runtime.info_dict(plan)["algo"],
              "shape": f"batch 1, seq_q 1, seq_kv {args.seq_kv}, heads {args.heads}, "
                       f"head_dim {args.head_dim}",
              "iters": iters, "python_call_us": round(t_python, 2), "bare_c_call_us": round(t_bare, 2),
              "difference_us": round(t_python - t_bare, 2),
              "python_layer_us": round(t_direct, 2), "goal_us": 15.0}
    if args.json:
        print(json.dumps(result))
    else:
        for key, val in result.items():
            print(f"{key:>16}: {val}")


if __name__ == "__main__":
    main()
