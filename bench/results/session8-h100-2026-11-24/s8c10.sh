#!/bin/bash
# session 8 call 10: column-halves exchange without cluster-scope fences (relaxed arrive at the
# init barrier, CTA-scope acquire in the per-tile wait; call 9 counted 0.77 cycles of membar
# stall per issued instruction at f32 16x128): A/B against 3486524 (graph timing, 3 rounds),
# default plans and (second pass) column halves forced on 16-bit shapes; conformance, checks
set -u
R=/tmp/s8c10; rm -rf $R; mkdir -p $R
S=$(date +%s)
t(){ echo "[$(( $(date +%s)-S )) s] $*" | tee -a $R/log; }
pack(){ tar czf $OUT/results.tgz -C $R . ; }
C=$(cat .gpu-kit/commit); echo "commit $C" >> $R/log
python3 bench/gpu/seed_shapes.py seed | grep f32 > $R/shapes.txt
echo "sw f32 32 1 1 128 128 512 1 flash" >> $R/shapes.txt
ROUNDS=3 BENCH_ARGS="--reps 30 --graph 20" OUT=$R bash bench/gpu/ab_bench.sh .gpu-kit/base9 < $R/shapes.txt 2>> $R/log
t ab; cat $R/ab.md | tee -a $R/log; mv $R/ab.md $R/ab-f32.md; mv $R/ab.jsonl $R/ab-f32.jsonl; pack
printf 'cols f16 16 1 1 128 128 512 1 flash\ncols f16 1 1 1 512 512 768 1 flash\ncols f16 8 1 1 512 512 768 1 flash\n' > $R/shapes16.txt
POLYATTN_CUDA_COL_HALVES=1 ROUNDS=3 BENCH_ARGS="--reps 30 --graph 20" OUT=$R bash bench/gpu/ab_bench.sh .gpu-kit/base9 < $R/shapes16.txt 2>> $R/log
t ab16; cat $R/ab.md | tee -a $R/log; mv $R/ab.md $R/ab-f16-cols-forced.md; mv $R/ab.jsonl $R/ab-f16-cols-forced.jsonl; pack
ninja -C b-ab-new -j16 conformance > /dev/null 2>&1
B=b-ab-new/bin
for env in "X=0" "POLYATTN_CUDA_COL_HALVES=1"; do
  env $env timeout 100 $B/conformance --backend cuda > $R/conf.txt 2>&1; echo "conformance $env exit $? $(grep '^conformance cuda' $R/conf.txt)" | tee -a $R/log
done
python3 bench/gpu/seed_shapes.py check > $R/checks.txt
{ for env in "X=0" "POLYATTN_CUDA_COL_HALVES=1"; do
  env $env timeout 100 $B/polyattn_cuda_bench --reps 3 < $R/checks.txt; done; } > $R/checks.jsonl 2>>$R/log
python3 -c "
import json
rows=[json.loads(l) for l in open('$R/checks.jsonl') if l.startswith('{')]
rows=[r for r in rows if r.get('impl')=='polyattn']
print('checks (auto, column halves forced):', sum(1 for r in rows if r.get('ok')), 'of', len(rows), 'ok')" | tee -a $R/log
POLYATTN_CUDA_COL_HALVES=1 timeout 200 compute-sanitizer --tool racecheck --error-exitcode 99 $B/conformance --backend cuda --case d512_17x40 > $R/racecheck.txt 2>&1; echo "racecheck d512_17x40 cols forced exit $?" | tee -a $R/log
t done; pack
