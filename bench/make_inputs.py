#!/usr/bin/env python3
"""Writes random float32 Q, K, V .npy files for `polyattn run`.

    python3 bench/make_inputs.py --shape BATCH,HEADS_Q,HEADS_KV,SEQ_Q,SEQ_KV,HEAD_DIM[,HEAD_DIM_V] \
        [--seed N] [--std S] [--dir DIR] [--prefix P]

writes DIR/Pq.npy [batch, heads_q, seq_q, head_dim], DIR/Pk.npy and DIR/Pv.npy
[batch, heads_kv, seq_kv, head_dim(_v)], standard normal values times --std.
"""
import argparse
import os
import sys

try:
    import numpy as np
except ImportError:
    sys.stderr.write("make_inputs.py: numpy is required (apt install python3-numpy)\n")
    sys.exit(77)


def parse_shape(text):
    try:
        dims = [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError("expected comma-separated integers, got %r" % text)
    if len(dims) not in (6, 7) or min(dims) < 1:
        raise argparse.ArgumentTypeError(
            "expected 6 or 7 positive integers: batch,heads_q,heads_kv,seq_q,seq_kv,head_dim[,head_dim_v]")
    if len(dims) == 6:
        dims.append(dims[5])
    return dims


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", type=parse_shape, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--std", type=float, default=1.0)
    ap.add_argument("--dir", default=".")
    ap.add_argument("--prefix", default="")
    a = ap.parse_args()
    batch, heads_q, heads_kv, seq_q, seq_kv, head_dim, head_dim_v = a.shape
    rng = np.random.default_rng(a.seed)
    tensors = {
        "q": (batch, heads_q, seq_q, head_dim),
        "k": (batch, heads_kv, seq_kv, head_dim),
        "v": (batch, heads_kv, seq_kv, head_dim_v),
    }
    os.makedirs(a.dir, exist_ok=True)
    for name, shape in tensors.items():
        x = (rng.standard_normal(shape) * a.std).astype(np.float32)
        path = os.path.join(a.dir, a.prefix + name + ".npy")
        np.save(path, x)
        print(path, list(shape))


if __name__ == "__main__":
    main()
