#!/bin/bash
# session 4 call 5: seed_bench (conformance, checks, seed vs torch, chunk sweep) at HEAD; A/B against the session start (8ace4b9)
set -u
R=/tmp/s4c5; rm -rf $R; mkdir -p $R
S=$(date +%s)
t(){ echo "[$(( $(date +%s)-S )) s] $*" | tee -a $R/log; }
pack(){ tar czf $OUT/results.tgz -C $R . ; }
BUILD=b-seed OUT=$R/seed NCU=0 CHUNKS=1 CHUNK_DTYPES=f16,f32 COMMIT=$(cat .gpu-kit/commit) bash bench/gpu/seed_bench.sh > $R/seed_bench.out 2>&1
t seed_bench exit $?; tail -30 $R/seed_bench.out; pack
python3 bench/gpu/seed_shapes.py seed | BUILD=b-new OUT=$R/ab ROUNDS=2 bash bench/gpu/ab_bench.sh .gpu-kit/base 2>>$R/log
t ab done; cat $R/ab/ab.md; pack
