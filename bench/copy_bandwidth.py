"""The GPU's measured device-to-device copy bandwidth, the yardstick of the memory-bound
decode goals: bytes read plus bytes written by a large copy, per second (median of timed
repetitions with CUDA events).  Usage: python3 bench/copy_bandwidth.py [--mib 2048] [--json F]"""
import argparse
import json
import sys


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mib", type=int, default=2048, help="size of the copied buffer (MiB)")
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--json", help="write the result here")
    args = ap.parse_args(argv)
    if args.mib < 1 or args.reps < 1:
        ap.error("--mib and --reps must be positive")
    try:
        import torch
    except ImportError as e:
        print("copy_bandwidth: PyTorch is not installed (%s)" % e, file=sys.stderr)
        return 77
    if not torch.cuda.is_available():
        print("copy_bandwidth: no CUDA device", file=sys.stderr)
        return 77
    n = args.mib * (1 << 20)
    src = torch.randint(0, 255, (n,), dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    ev = [torch.cuda.Event(enable_timing=True) for _ in range(args.reps + 1)]
    ev[0].record()
    for i in range(args.reps):
        dst.copy_(src)
        ev[i + 1].record()
    torch.cuda.synchronize()
    ms = sorted(ev[i].elapsed_time(ev[i + 1]) for i in range(args.reps))
    med = ms[len(ms) // 2]
    gbps = 2.0 * n / (med * 1e-3) / 1e9
    res = {"device": torch.cuda.get_device_name(0), "bytes_copied": n, "ms_median": med,
           "ms_min": ms[0], "gbps_read_plus_write": gbps, "torch": torch.__version__}
    print("copy bandwidth: %.1f GB/s (read + write, %d MiB, median of %d)" % (gbps, args.mib,
                                                                           args.reps))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
