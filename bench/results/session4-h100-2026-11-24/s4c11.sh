#!/bin/bash
# session 4 call 11: the benches after sharing bench_common.h / testkit conversions: validated records on GPU
set -u
R=/tmp/s4c11; rm -rf $R; mkdir -p $R
cmake -G Ninja -S . -B b-new -DCMAKE_BUILD_TYPE=Release -DPOLYATTN_CUDA=ON -DPOLYATTN_HIP=OFF -DPOLYATTN_OPENCL=OFF -DPOLYATTN_CUDA_ARCHITECTURES=90 -DPOLYATTN_WERROR=ON > /dev/null && ninja -C b-new -j16 polyattn_cuda polyattn_cuda_bench polyattn_cuda_bwd_bench > $R/build.txt 2>&1 || { tail -20 $R/build.txt; exit 1; }
{ python3 bench/gpu/seed_shapes.py check; python3 bench/gpu/shapes.py fa2 --quick; python3 bench/gpu/seed_shapes.py seed f16; } > $R/fwd.txt
timeout 120 b-new/bin/polyattn_cuda_bench --reps 5 < $R/fwd.txt > $R/fwd.jsonl 2>> $R/log
python3 bench/gpu/shapes.py fa2 | grep "^fa2 bf16" | awk '$6==2048 || $6==4096' > $R/bwd.txt
echo "odd bf16 2 4 2 77 130 64 2 flash" >> $R/bwd.txt; echo "odd f16 1 3 1 129 65 128 1 flash" >> $R/bwd.txt
timeout 200 b-new/bin/polyattn_cuda_bwd_bench --reps 5 --det < $R/bwd.txt > $R/bwd.jsonl 2>> $R/log
python3 - $R <<'PY'
import json, sys
for f in ("fwd", "bwd"):
    rows = [json.loads(l) for l in open(f"{sys.argv[1]}/{f}.jsonl") if l.startswith("{")]
    dev = [r for r in rows if r.get("impl") == "device"]
    rows = [r for r in rows if r.get("impl") == "polyattn"]
    print(f, dev[0] if dev else None)
    print(f, "records", len(rows), "ok", sum(1 for r in rows if r.get("ok")), "not ok:", [ (r.get("suite"), r.get("seq_q"), r.get("head_dim")) for r in rows if not r.get("ok")])
PY
tar czf $OUT/results.tgz -C $R .
