#!/bin/bash
# session 8 call 8: two K/V buffers in the wide kernels where they fit (16-bit: block columns
# <= 512; f32: column halves at D 512): A/B against 3486524 (ab_bench, graph timing, 3 rounds),
# conformance with every schedule forced, odd-shape checks
set -u
R=/tmp/s8c8; rm -rf $R; mkdir -p $R
S=$(date +%s)
t(){ echo "[$(( $(date +%s)-S )) s] $*" | tee -a $R/log; }
pack(){ tar czf $OUT/results.tgz -C $R . ; }
C=$(cat .gpu-kit/commit); echo "commit $C" >> $R/log
cat > $R/shapes.txt <<'SH'
seed f16 16 1 1 128 128 512 1 flash
seed f32 16 1 1 128 128 512 1 flash
seed f16 8 1 1 512 512 768 1 flash
seed f16 1 1 1 4096 4096 1024 1 flash
sw f16 16 1 1 256 256 512 1 flash
sw f16 32 1 1 128 128 512 1 flash
sw f16 8 1 1 512 512 512 1 flash
sw f16 1 1 1 4096 4096 512 1 flash
sw f16 4 16 16 1024 1024 512 0 flash
sw f32 32 1 1 128 128 512 1 flash
sw f16 2 1 1 2048 2048 1024 1 flash
SH
ROUNDS=3 BENCH_ARGS="--reps 30 --graph 20" OUT=$R bash bench/gpu/ab_bench.sh .gpu-kit/base9 < $R/shapes.txt 2>> $R/log
t ab; cat $R/ab.md | tee -a $R/log; pack
ninja -C b-ab-new -j16 conformance > /dev/null 2>&1
B=b-ab-new/bin
for env in "X=0" "POLYATTN_CUDA_FLASH_SPLIT=1" "POLYATTN_CUDA_KEY_HALVES=1 POLYATTN_CUDA_FLASH_SPLIT=0" "POLYATTN_CUDA_COL_HALVES=1"; do
  env $env timeout 100 $B/conformance --backend cuda > $R/conf.txt 2>&1; echo "conformance $env exit $? $(grep '^conformance cuda' $R/conf.txt)" | tee -a $R/log
done
python3 bench/gpu/seed_shapes.py check > $R/checks.txt
{ for env in "X=0" "POLYATTN_CUDA_FLASH_SPLIT=1" "POLYATTN_CUDA_KEY_HALVES=1 POLYATTN_CUDA_FLASH_SPLIT=0" "POLYATTN_CUDA_COL_HALVES=1"; do
  env $env timeout 100 $B/polyattn_cuda_bench --reps 3 < $R/checks.txt; done; } > $R/checks.jsonl 2>>$R/log
python3 -c "
import json
rows=[json.loads(l) for l in open('$R/checks.jsonl') if l.startswith('{')]
rows=[r for r in rows if r.get('impl')=='polyattn']
print('checks (auto, split, key halves, column halves forced):', sum(1 for r in rows if r.get('ok')), 'of', len(rows), 'ok')" | tee -a $R/log
t done; pack
