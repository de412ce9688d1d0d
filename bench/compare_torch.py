#!/usr/bin/env python3
"""polyattn against PyTorch's scaled_dot_product_attention, on the same shapes, in one run.

    python3 bench/compare_torch.py --suite fa2 --polyattn build/bin/polyattn \\
        --backends cuda,opencl --dtype f16 --out DIR

The shapes come from `polyattn bench --suite S --list` (the suite definitions live in one
place: cli/bench_suites.c).  For each shape and dtype:

- PyTorch: torch.nn.functional.scaled_dot_product_attention with each of its backends alone
  (flash, cudnn, efficient, math; torch.nn.attention.sdpa_kernel).  A backend that refuses
  the shape is reported as unsupported with its message (oom when it ran out of memory).  Each output is first checked
  against a float64 reference on sampled rows (wrong results are reported, not timed), then
  the same method as `polyattn bench`: warm-up calls, CUDA events chained around --reps
  back-to-back calls rotating among input sets (Q, K, V: 256 MiB in all to exceed the caches,
  at most 4, as polyattn bench; --rotate N: exactly N sets on both sides, 1-16), the median
  reported; slow calls get fewer reps to stay within --max-seconds.  With --graph N each
  timed sample is instead one replay of a CUDA graph of N calls, on both sides (polyattn
  bench --graph N: CUDA backends only): per-call events include the host's launch cost
  wherever a call is shorter than it.
- polyattn: one `polyattn bench` subprocess on the backends of --backends (each measurement
  validated against the host reference by polyattn itself; each device in its own process,
  so that a crash costs one measurement), its JSON read back and its tables (with the
  backend comparison when there are several devices) shown and kept.

Masks: polyattn's causal suites align the mask bottom-right (the last query sees every key).
PyTorch's is_causal is top-left, so bottom-right with seq_q < seq_kv goes through
torch.nn.attention.bias.causal_lower_right (seq_q == 1: no mask, which is the same thing).

Printed: polyattn's own tables, then a table of ms per implementation and a table of
ratios polyattn/torch (below 1: polyattn faster), per polyattn backend (its best algorithm
per shape) and torch backend, with geometric means.  --csv/--json (or --out DIR) write every
measurement, with ratio columns on the polyattn rows.

--backward times the backward pass on both sides: `polyattn bench --backward` (gradients
validated by polyattn, the backward call timed alone) and, for each SDPA backend,
torch.autograd.grad(out, (q, k, v), dO) after an untimed forward (the same gradients as
out.backward(dO), without accumulating into .grad); the gradients are first checked against
a float64 computation on sampled rows (dQ rows; dK and dV rows from every query of the KV
group).  TFLOP/s counts 2.5x the forward FLOPs.  --deterministic goes to polyattn.

Shape lines (torch alone on shapes from elsewhere):
    printf 'fa2 f16 4 16 16 4096 4096 64 1\n' | python3 bench/compare_torch.py --shape-lines - \
        --jsonl - > torch.jsonl
reads lines `suite dtype batch heads_q heads_kv seq_q seq_kv head_dim causal algos` (causal
1: top-left; algos ignored), times torch alone (no polyattn run) and writes one JSON object
per line: first {"impl": "torch-version", ...}, then per shape and SDPA backend
{"impl": "torch-<backend>", "suite", "dtype", "batch", ..., "causal", "pass", "ok", "ms",
"tflops", "reps", "timing", "error", "max_err"[, "max_err_dq", "max_err_dk", "max_err_dv"]}.
With --jsonl -, the progress goes to stderr.

PyTorch is imported only when something is to be timed: --help, bad usage and --no-torch
work without it.

Exit status: 0 done; 1 a polyattn measurement failed validation or crashed, or a polyattn
run failed; 2 bad usage; 77 PyTorch or a CUDA device is missing (unless --no-torch, which
runs the polyattn side alone: useful without a GPU).
"""
import argparse
import csv
import datetime
import io
import json
import math
import os
import shutil
import signal
import subprocess
import sys

from torch_sdpa import SHAPE_KEYS, TorchBench, torch_available

TORCH_BACKENDS = ("flash", "cudnn", "efficient", "math")
SKIP = 77


def fail(message, code=2):
    sys.stderr.write("compare_torch.py: %s\n" % message)
    sys.exit(code)


# Progress and tables: stdout, or stderr when --jsonl writes to stdout.
_log = [sys.stdout]


def say(text):
    _log[0].write(text + "\n")
    _log[0].flush()


def read_shape_lines(path):
    """Shape lines -> shape dicts (duplicates dropped)."""
    try:
        f = sys.stdin if path == "-" else open(path)
    except OSError as e:
        fail("--shape-lines: %s" % e)
    rows, seen = [], set()
    with f:
        for n, line in enumerate(f, 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            words = line.split()
            try:
                suite, dtype = words[0], words[1]
                b, hq, hk, sq, skv, d, causal = (int(w) for w in words[2:9])
            except (ValueError, IndexError):
                fail("--shape-lines: line %d: expected 'suite dtype batch heads_q heads_kv "
                     "seq_q seq_kv head_dim causal [algos]': %s" % (n, line.strip()))
            if dtype not in ("f32", "f16", "bf16") or min(b, hq, hk, sq, skv, d) < 1 or \
                    hq % hk or causal not in (0, 1):
                fail("--shape-lines: line %d: bad values: %s" % (n, line.strip()))
            row = {"suite": suite, "batch": b, "heads_q": hq, "heads_kv": hk, "seq_q": sq,
                   "seq_kv": skv, "head_dim": d, "head_dim_v": d, "dtype": dtype,
                   "mask": "causal-top-left" if causal else "none"}
            key = (suite,) + key_of(row)
            if key not in seen:
                seen.add(key)
                rows.append(row)
    if not rows:
        fail("--shape-lines: no shape in %s" % path, 1)
    return rows


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="polyattn vs torch scaled_dot_product_attention on a polyattn bench suite",
        epilog="Exit status: 0 done, 1 a polyattn failure, 2 bad usage, 77 no PyTorch/CUDA.")
    p.add_argument("--suite", help="article|fa2|decode|custom (default fa2)")
    p.add_argument("--shape", help="custom suite: B,HQ,HKV,SQ,SKV,D[,DV];... (as polyattn bench)")
    p.add_argument("--causal", choices=("top-left", "bottom-right"),
                   help="custom suite: the mask (default none)")
    p.add_argument("--polyattn", default="build/bin/polyattn", help="the polyattn executable")
    p.add_argument("--backends",
                   help="polyattn backends, comma-separated, each NAME[:DEVICE] "
                        "(cuda, hip, opencl, host; NAME alone is device 0), measured in one "
                        "polyattn bench run; 'all': every device (polyattn bench "
                        "--compare-backends; OpenCL lists GPUs before CPUs); 'none': torch "
                        "alone (default cuda)")
    p.add_argument("--algo", default="all", help="polyattn algorithms (as polyattn bench --algo)")
    p.add_argument("--dtype", help="f32|f16|bf16[,...] (default: the suite's)")
    p.add_argument("--torch-backends", default=",".join(TORCH_BACKENDS),
                   help="SDPA backends, comma-separated (default %s)" % ",".join(TORCH_BACKENDS))
    p.add_argument("--reps", type=int, default=10, help="timed calls (default 10, median)")
    p.add_argument("--warmup", type=int, default=3, help="warm-up calls (default 3)")
    p.add_argument("--graph", type=int, default=0, metavar="N",
                   help="each timed sample replays a CUDA graph of N calls and counts "
                        "replay time / N (GPU time without the launch cost), on both sides "
                        "(polyattn bench --graph N; forward only on the torch side)")
    p.add_argument("--rotate", type=int, default=0, metavar="N",
                   help="input sets to rotate among on both sides, 1-16 (default: 256 MiB "
                        "in all, at most 4, as polyattn bench)")
    p.add_argument("--max-seconds", type=float, default=10.0,
                   help="cap per measurement: slow calls get fewer reps, at least 3 (default 10)")
    p.add_argument("--out", help="folder for compare_torch_<suite>.{csv,json,txt} and "
                                 "polyattn_<suite>.{csv,json,txt} (polyattn's own reports: "
                                 "bench/plot.py reads the CSV)")
    p.add_argument("--csv", help="CSV file (default under --out)")
    p.add_argument("--json", help="JSON file (default under --out)")
    p.add_argument("--no-torch", action="store_true",
                   help="skip PyTorch: the polyattn side alone (no GPU needed)")
    p.add_argument("--backward", action="store_true",
                   help="time the backward pass (polyattn bench --backward; torch: "
                        "autograd.grad of the SDPA output after an untimed forward)")
    p.add_argument("--deterministic", action="store_true",
                   help="with --backward: polyattn's deterministic gradients")
    p.add_argument("--shape-lines", metavar="FILE",
                   help="shapes from lines 'suite dtype b hq hkv sq skv d causal' ('-': stdin) instead of a "
                        "suite; torch alone (implies --backends none)")
    p.add_argument("--jsonl", metavar="FILE",
                   help="also write one JSON object per torch measurement ('-': stdout, the "
                        "progress then goes to stderr)")
    args = p.parse_args(argv)
    if args.graph and (args.backward or args.graph < 0 or args.graph > 1000):
        p.error("--graph: 1..1000 calls, forward only")
    if args.rotate < 0 or args.rotate > 16:
        p.error("--rotate: 1..16 input sets")
    if args.deterministic and not args.backward:
        p.error("--deterministic: only with --backward")
    if args.shape_lines is not None:
        for opt, value in (("--suite", args.suite), ("--shape", args.shape),
                           ("--causal", args.causal), ("--backends", args.backends),
                           ("--dtype", args.dtype)):
            if value is not None:
                p.error("--shape-lines: not with %s (the lines give the shapes; torch alone)" % opt)
        if args.no_torch:
            p.error("--shape-lines: torch alone; not with --no-torch")
        args.backends = "none"
        args.suite = "lines"
    if args.jsonl is not None and args.no_torch:
        p.error("--jsonl: torch measurements; not with --no-torch")
    args.suite = args.suite or "fa2"
    args.backends = args.backends or "cuda"
    if args.suite == "custom" and not args.shape:
        p.error("--suite custom needs --shape")
    if args.suite != "custom" and (args.shape or args.causal):
        p.error("--shape and --causal only with --suite custom")
    if args.reps < 1 or args.warmup < 0 or args.max_seconds < 0:
        p.error("--reps >= 1, --warmup >= 0, --max-seconds >= 0")
    args.torch_list = [b for b in args.torch_backends.split(",") if b]
    for b in args.torch_list:
        if b not in TORCH_BACKENDS:
            p.error("--torch-backends: unknown '%s' (expected %s)" % (b, ",".join(TORCH_BACKENDS)))
    args.backend_list = [] if args.backends == "none" else [b for b in args.backends.split(",") if b]
    for b in ([] if args.backends == "all" else args.backend_list):
        name, _, dev = b.partition(":")
        if name not in ("cuda", "hip", "opencl", "host") or (dev and not dev.isdigit()):
            p.error("--backends: unknown '%s' (expected cuda|hip|opencl|host[:DEVICE])" % b)
    if not args.backend_list and args.no_torch:
        p.error("nothing to measure: --backends none with --no-torch")
    return args


def bench_shape_args(args):
    """The suite options polyattn bench takes, shared by --list and the runs."""
    out = ["--suite", args.suite]
    if args.shape:
        out += ["--shape", args.shape]
    if args.causal:
        out += ["--causal", args.causal]
    if args.dtype:
        out += ["--dtype", args.dtype]
    return out


def list_shapes(args):
    cmd = [args.polyattn, "bench"] + bench_shape_args(args) + ["--list"]
    try:
        res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    except OSError as e:
        fail("--polyattn: cannot run %s: %s" % (args.polyattn, e))
    if res.returncode != 0:
        fail("%s failed (exit %d): %s" % (" ".join(cmd), res.returncode, res.stderr.strip()),
             2 if res.returncode == 2 else 1)
    rows = []
    for row in csv.DictReader(io.StringIO(res.stdout)):
        for k in SHAPE_KEYS:
            row[k] = int(row[k])
        rows.append(row)
    if not rows:
        fail("%s listed no shape" % " ".join(cmd), 1)
    return rows


def key_of(r):
    """A shape's identity; polyattn's serving suites list one shape in several K/V layouts
    (dense, cache, paged with a block size), which torch runs as its one dense layout."""
    return tuple(int(r[k]) for k in SHAPE_KEYS) + (r["mask"], r["dtype"], r.get("layout") or "dense",
                                                   int(r.get("block_size") or 0))


def dense_key(r):
    return key_of(r)[:-2] + ("dense", 0)


def torch_shapes(shapes):
    """The shapes torch runs: each dense shape once (other layouts reuse its numbers)."""
    seen, out = set(), []
    for s in shapes:
        k = dense_key(s)
        if k not in seen:
            seen.add(k)
            out.append(dict(s, layout="dense", block_size=0))
    return out


def spread_to_layouts(shapes, t_results):
    """Torch's result of each dense shape, repeated for the shape's other layouts."""
    by_key = {}
    for r in t_results:
        by_key.setdefault(dense_key(r), []).append(r)
    out = list(t_results)
    for s in shapes:
        if key_of(s) == dense_key(s):
            continue
        for r in by_key.get(dense_key(s), []):
            out.append(dict(r, layout=s.get("layout"), block_size=int(s.get("block_size") or 0)))
    return out


def flops(s, backward=False):
    """FlashAttention's count; the backward is 2.5x the forward (five GEMMs against two)."""
    f = 4.0 * s["batch"] * s["heads_q"] * s["seq_q"] * s["seq_kv"] * s["head_dim"]
    f = f if s["mask"] == "none" else f / 2
    return 2.5 * f if backward else f


# ---- polyattn side -------------------------------------------------------------------

_current_proc = [None]
_stop = [False]


def on_stop_signal(signum, frame):
    """SIGTERM/SIGINT: polyattn finishes its measurement and writes its reports, torch stops
    after the measurement under way, and the reports hold what was measured."""
    if _stop[0]:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    _stop[0] = True
    proc = _current_proc[0]
    if proc is not None and proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
        except OSError:
            pass


def run_polyattn(args, raw_dir):
    """Runs polyattn bench once on every backend of --backends (one device after the other,
    each in its own process inside polyattn, with its backend comparison table when there
    are several); returns (result dicts, problem or None)."""
    base = os.path.join(raw_dir, "polyattn_%s" % args.suite)
    json_path, csv_path, txt_path = base + ".json", base + ".csv", base + ".txt"
    if args.backends == "all":
        targets = ["--compare-backends"]
    else:
        targets = ["--backend", ",".join(args.backend_list)]
    cmd = [args.polyattn, "bench"] + bench_shape_args(args) + targets + [
        "--algo", args.algo, "--reps", str(args.reps), "--warmup", str(args.warmup),
        "--max-seconds", str(args.max_seconds), "--json", json_path, "--csv", csv_path]
    if args.backward:
        cmd.append("--backward")
    if args.graph:
        cmd += ["--graph", str(args.graph)]
    if args.rotate:
        cmd += ["--rotate", str(args.rotate)]
    if args.deterministic:
        cmd.append("--deterministic")
    say("== " + " ".join(cmd))
    with open(txt_path, "w") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, bufsize=1)
        _current_proc[0] = proc
        for line in proc.stdout:  # polyattn's tables: shown and kept
            _log[0].write(line)
            _log[0].flush()
            log.write(line)
        code = proc.wait()
        _current_proc[0] = None
    problem = None
    if code != 0:
        problem = "polyattn bench exited with %d (see its table: failed or crashed measurements, " \
                  "or a device that did not open)" % code
    if not os.path.exists(json_path):
        return [], problem or "polyattn bench wrote no JSON"
    with open(json_path) as f:
        doc = json.load(f)
    results = doc.get("results", [])
    for r in results:
        r["label"] = "%s:%s" % (r.get("backend", doc.get("backend")),
                                r.get("device_index", doc.get("device_index")))
    return results, problem


# ---- torch side ----------------------------------------------------------------------

def best_polyattn(p_results, key, label):
    best = None
    for r in p_results:
        if r["label"] == label and key_of(r) == key and r.get("status") == "ok" and r.get("ms"):
            if best is None or r["ms"] < best["ms"]:
                best = r
    return best


def status_of(results, key, pred):
    for r in results:
        if key_of(r) == key and pred(r):
            return r
    return None


def geomean(values):
    values = [v for v in values if v and v > 0]
    if not values:
        return None
    return math.exp(sum(math.log(v) for v in values) / len(values))


def layout_text(s):
    layout = s.get("layout") or "dense"
    return "%s/%d" % (layout, int(s["block_size"])) if layout == "paged" else layout


def shape_text(s):
    return "%-5d %-4d %-4d %-6d %-6d %-5d %-4s %-5s %-9s" % (
        s["batch"], s["heads_q"], s["heads_kv"], s["seq_q"], s["seq_kv"], s["head_dim"],
        {"none": "none", "causal-top-left": "tl", "causal-bottom-right": "br"}.get(s["mask"], "?"),
        s["dtype"], layout_text(s))


SHAPE_HEADER = "%-5s %-4s %-4s %-6s %-6s %-5s %-4s %-5s %-9s" % (
    "batch", "hq", "hkv", "seq_q", "seq_kv", "d", "mask", "dtype", "layout")


def tables(shapes, p_results, t_results, labels, torch_names):
    out = io.StringIO()
    w = 14
    out.write("\nms per call (polyattn: its best algorithm per shape, after '/': un unfused, "
              "fu fused, fl flash)\n")
    cols = ["torch:" + n for n in torch_names] + labels
    out.write(SHAPE_HEADER + "".join(" %*s" % (w, c) for c in cols) + "\n")
    ratios = {(l, n): [] for l in labels for n in torch_names}
    ratio_rows = []
    for s in shapes:
        key = key_of(s)
        cells = []
        t_ms = {}
        for n in torch_names:
            r = status_of(t_results, key, lambda r, n=n: r["backend"] == n)
            if r is None:
                cells.append("-")
            elif r["status"] == "ok":
                t_ms[n] = r["ms"]
                cells.append("%.4g" % r["ms"])
            else:
                cells.append(r["status"][:w])
        p_ms = {}
        for l in labels:
            b = best_polyattn(p_results, key, l)
            if b:
                p_ms[l] = b["ms"]
                cells.append("%.4g/%s" % (b["ms"], b["algo"][:2]))
            else:
                r = status_of(p_results, key, lambda r, l=l: r["label"] == l)
                cells.append(r["status"][:w] if r else "-")
        out.write(shape_text(s) + "".join(" %*s" % (w, c) for c in cells) + "\n")
        row = []
        for l in labels:
            for n in torch_names:
                if l in p_ms and n in t_ms:
                    x = p_ms[l] / t_ms[n]
                    ratios[(l, n)].append(x)
                    row.append("%.2fx" % x)
                else:
                    row.append("-")
        ratio_rows.append((s, row))
    if torch_names and labels:
        out.write("\nratio polyattn/torch (ms of polyattn's best algorithm / ms of the torch "
                  "backend; < 1: polyattn faster)\n")
        rcols = ["%s/%s" % (l, n) for l in labels for n in torch_names]
        rw = max(w, max(len(c) for c in rcols))
        out.write(SHAPE_HEADER + "".join(" %*s" % (rw, c) for c in rcols) + "\n")
        for s, row in ratio_rows:
            out.write(shape_text(s) + "".join(" %*s" % (rw, c) for c in row) + "\n")
        means = []
        for l in labels:
            for n in torch_names:
                g = geomean(ratios[(l, n)])
                means.append("%.2fx (%d)" % (g, len(ratios[(l, n)])) if g else "-")
        out.write("%-*s" % (len(SHAPE_HEADER), "geomean (shapes)") +
                  "".join(" %*s" % (rw, c) for c in means) + "\n")
    return out.getvalue()


def add_ratio_columns(p_results, t_results, torch_names):
    for r in p_results:
        for n in torch_names:
            t = status_of(t_results, key_of(r), lambda x, n=n: x["backend"] == n)
            ok = r.get("status") == "ok" and r.get("ms") and t and t["status"] == "ok"
            r["ratio_vs_torch_" + n] = r["ms"] / t["ms"] if ok else None


CSV_FIELDS = ["suite", "impl", "backend", "device", "algo"] + list(SHAPE_KEYS) + [
    "mask", "dtype", "status", "reps", "ms", "ms_min", "ms_max", "tflops", "max_err", "reason",
    "pass", "max_err_dq", "max_err_dk", "max_err_dv", "layout", "block_size", "num_splits", "gbps"]


def write_csv(path, suite, rows, torch_names):
    fields = CSV_FIELDS + ["ratio_vs_torch_" + n for n in torch_names]
    with open(path + ".tmp", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            row = dict(r)
            row.setdefault("suite", suite)
            for k in fields:
                if isinstance(row.get(k), float):
                    row[k] = "%.6g" % row[k]
                elif row.get(k) is None:
                    row[k] = ""
            w.writerow(row)
    os.replace(path + ".tmp", path)


def git_commit(path):
    try:
        res = subprocess.run(["git", "-C", path, "rev-parse", "HEAD"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
        return res.stdout.strip() or None
    except OSError:
        return None


def jsonl_record(r):
    """A torch measurement as a shape-line record."""
    out = {"impl": "torch-" + r["backend"], "suite": r.get("suite"), "dtype": r["dtype"],
           "batch": r["batch"], "heads_q": r["heads_q"], "heads_kv": r["heads_kv"],
           "seq_q": r["seq_q"], "seq_kv": r["seq_kv"], "head_dim": r["head_dim"],
           "causal": 0 if r["mask"] == "none" else 1, "pass": r.get("pass", "forward"),
           "ok": r["status"] == "ok"}
    if r["status"] == "ok":
        out.update(ms=r["ms"], tflops=r["tflops"], reps=r["reps"], timing=r.get("timing", "events"))
    else:
        out["error"] = "%s: %s" % (r["status"], r.get("reason", ""))[:200]
    for k in ("max_err", "max_err_dq", "max_err_dk", "max_err_dv"):
        if r.get(k) is not None:
            out[k] = r[k]
    return out


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    needs_polyattn = args.backend_list or args.shape_lines is None
    if needs_polyattn and not (os.path.isfile(args.polyattn) and os.access(args.polyattn, os.X_OK)) \
            and not shutil.which(args.polyattn):
        fail("--polyattn: %s is not an executable (build it: cmake --build build)" % args.polyattn)
    jsonl = None
    if args.jsonl == "-":
        jsonl = sys.stdout
        _log[0] = sys.stderr
    elif args.jsonl:
        if not os.path.isdir(os.path.dirname(os.path.abspath(args.jsonl))):
            fail("--jsonl: folder of %s does not exist" % args.jsonl)
    shapes = read_shape_lines(args.shape_lines) if args.shape_lines is not None else None
    torch = None
    if not args.no_torch:
        torch, why = torch_available()
        if torch is None:
            fail("%s; nothing to compare with (use --no-torch for the polyattn side alone)" % why,
                 SKIP)
    if args.jsonl and jsonl is None:
        jsonl = open(args.jsonl, "w")
    if shapes is None:
        shapes = list_shapes(args)
    out_dir = args.out
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
    raw_dir = out_dir or os.environ.get("TMPDIR", "/tmp")
    csv_path = args.csv or (out_dir and os.path.join(out_dir, "compare_torch_%s.csv" % args.suite))
    json_path = args.json or (out_dir and os.path.join(out_dir, "compare_torch_%s.json" % args.suite))
    for path, opt in ((csv_path, "--csv"), (json_path, "--json")):
        if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            fail("%s: folder of %s does not exist" % (opt, path))

    rc = 0
    problems = []
    p_results = []
    signal.signal(signal.SIGTERM, on_stop_signal)
    signal.signal(signal.SIGINT, on_stop_signal)
    if args.backend_list:
        p_results, problem = run_polyattn(args, raw_dir)
        if problem:
            problems.append(problem)
    for r in p_results:
        r["impl"] = "polyattn"
        if r.get("status") in ("invalid", "error"):
            rc = 1
    if problems:
        rc = 1
    labels = []
    for r in p_results:
        if r["label"] not in labels:
            labels.append(r["label"])

    t_results, torch_info = [], None
    torch_names = [] if args.no_torch else args.torch_list
    if torch is not None and not _stop[0]:
        tb = TorchBench(torch, args, say, flops, _stop)
        torch_info = tb.info
        say("\n== torch %s (CUDA %s, cuDNN %s) on %s%s" % (
            tb.info["torch"], tb.info["cuda"], tb.info["cudnn"], tb.device_name,
            ", backward pass" if args.backward else ""))
        on_result = None
        if jsonl is not None:
            jsonl.write(json.dumps({"impl": "torch-version", "torch": tb.info["torch"],
                                    "cudnn": tb.info["cudnn"], "device": tb.device_name}) + "\n")
            jsonl.flush()

            def on_result(r):
                jsonl.write(json.dumps(jsonl_record(r)) + "\n")
                jsonl.flush()
        t_results = spread_to_layouts(shapes, tb.run(torch_shapes(shapes), on_result))
    if jsonl is not None and jsonl is not sys.stdout:
        jsonl.close()

    add_ratio_columns(p_results, t_results, torch_names)
    text = tables(shapes, p_results, t_results, labels, torch_names)
    header = "compare_torch: suite %s%s, polyattn %s, torch %s\n" % (
        args.suite, ", backward pass" if args.backward else "", ", ".join(labels) or "-",
        "%s on %s" % (torch_info["torch"], torch_info["device"]) if torch_info else "not run")
    _log[0].write("\n" + header + text)
    for p in problems:
        _log[0].write("problem: %s\n" % p)
    unsupported = [r for r in t_results if r["status"] != "ok"]
    if unsupported:
        _log[0].write("torch backends that did not run (status: message):\n")
        seen = set()
        for r in unsupported:
            line = "  %s %s: %s" % (r["backend"], r["status"], r["reason"][:200])
            if line not in seen and len(seen) < 30:
                seen.add(line)
                _log[0].write(line + "\n")
    _log[0].flush()

    rows = t_results + p_results
    for r in p_results:
        r.setdefault("backend", r["label"])
        r["backend"] = r["label"]
    if csv_path:
        write_csv(csv_path, args.suite, rows, torch_names)
    if json_path:
        doc = {"suite": args.suite,
               "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
               "git_commit": git_commit(os.path.dirname(os.path.abspath(__file__))),
               "command": sys.argv, "torch": torch_info, "polyattn_backends": labels,
               "torch_backends": torch_names, "reps": args.reps, "warmup": args.warmup,
               "pass": "backward" if args.backward else "forward",
               "flops_convention": ("2.5 x " if args.backward else "") +
               "4*batch*heads_q*seq_q*seq_kv*head_dim, halved when causal",
               "ratio": "polyattn ms / torch ms", "problems": problems, "results": rows}
        with open(json_path + ".tmp", "w") as f:
            json.dump(doc, f, indent=1)
        os.replace(json_path + ".tmp", json_path)
    if out_dir:
        with open(os.path.join(out_dir, "compare_torch_%s.txt" % args.suite), "w") as f:
            f.write(header + text)
    return rc


if __name__ == "__main__":
    sys.exit(main())
