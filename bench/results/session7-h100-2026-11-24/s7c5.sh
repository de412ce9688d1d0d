#!/bin/bash
# session 7 call 5 (s7c3.sh again): HEAD with interleaved key halves by default: ctest -L cuda, seed_bench.sh (conformance default /
# split forced / halves forced, odd-shape checks x3, seed shapes as CUDA-graph replays beside SDPA efficient
# and math), and the call-2 sweep shapes with the default plan (graph)
set -u
R=/tmp/s7c5; rm -rf $R; mkdir -p $R
S=$(date +%s)
t(){ echo "[$(( $(date +%s)-S )) s] $*" | tee -a $R/log; }
pack(){ tar czf $OUT/results.tgz -C $R . ; }
C=$(cat .gpu-kit/commit); echo "commit $C" >> $R/log
STAGES="build test" BUILD=b-checks OUT=$R/checks COMMIT=$C bash bench/gpu/cuda_checks.sh > $R/checks.out 2>&1
t checks exit $?; grep -E "tests passed|Failed|FAIL" $R/checks/checks.log | head -5 | tee -a $R/log
pack
BUILD=b-checks GRAPH=20 CHUNKS=0 NCU=0 OUT=$R/seed COMMIT=$C bash bench/gpu/seed_bench.sh > $R/seed.out 2>&1
t seed exit $?; grep -E "^conformance|checks:|FAIL" $R/seed/seed.log | head -12 | tee -a $R/log
pack
cat > $R/shapes.txt <<'SH'
sw f16 16 1 1 128 128 512 1 flash
sw f16 32 1 1 128 128 512 1 flash
sw f16 16 1 1 256 256 512 1 flash
sw f16 4 1 1 512 512 768 1 flash
sw f16 8 1 1 512 512 768 1 flash
sw f32 16 1 1 128 128 512 1 flash
sw f32 8 1 1 512 512 768 1 flash
sw f32 32 1 1 128 128 512 1 flash
SH
for r in 1 2; do POLYATTN_LOG=dispatch timeout 100 b-checks/bin/polyattn_cuda_bench --reps 30 --graph 20 < $R/shapes.txt 2>$R/dispatch$r.txt | sed "s/^{\"impl\":\"polyattn\"/{\"round\":$r,\"impl\":\"polyattn\"/" >> $R/sweep.jsonl; done
python3 - $R/sweep.jsonl <<'PY' | tee $R/sweep.md | tee -a $R/log
import json,sys
best={}
for l in open(sys.argv[1]):
    if not l.startswith('{'): continue
    r=json.loads(l)
    if 'ms' in r:
        k=(r['dtype'],r['batch'],r['seq_q'],r['head_dim']); best[k]=min(best.get(k,(9e9,0))[0],r['ms']),r['ok']
print('| shape | default plan ms (graph, best of 2) | ok |'); print('|---|---|---|')
for k,(ms,ok) in sorted(best.items()): print('| %s %dx%d D%d | %.4f | %s |'%(k+(ms,ok)))
PY
grep -o "key halves [01]" $R/dispatch1.txt | sort | uniq -c | tee -a $R/log
cat $R/seed/summary.md | tee -a $R/log
gzip $R/checks/*.log 2>/dev/null
t done; pack
