#!/bin/bash
# session 8 call 3: column halves (st.async exchange), f32 by default: ctest -L cuda, conformance
# (default and column halves forced), compute-sanitizer memcheck/racecheck with them forced, then
# A/B on larger f32 grids (many waves, non-causal) in one binary (COL_HALVES=0/1 alternating)
set -u
R=/tmp/s8c3; rm -rf $R; mkdir -p $R
S=$(date +%s)
t(){ echo "[$(( $(date +%s)-S )) s] $*" | tee -a $R/log; }
pack(){ tar czf $OUT/results.tgz -C $R . ; }
echo "commit $(cat .gpu-kit/commit)" >> $R/log
STAGES="build test" BUILD=b-checks OUT=$R/checks COMMIT="$(cat .gpu-kit/commit)" bash bench/gpu/cuda_checks.sh > $R/checks.txt 2>&1
grep -E "tests passed|tests failed|build took|Failed|\*\*\*" $R/checks.txt | head -12 | tee -a $R/log
t checks; pack
B=b-checks/bin
timeout 100 $B/conformance --backend cuda > $R/conf.txt 2>&1; echo "conf default exit $?" | tee -a $R/log
POLYATTN_CUDA_COL_HALVES=1 timeout 100 $B/conformance --backend cuda --algo flash >> $R/conf.txt 2>&1; echo "conf flash cols forced exit $?" | tee -a $R/log
grep -h "^conformance cuda" $R/conf.txt | tee -a $R/log
POLYATTN_CUDA_COL_HALVES=1 timeout 240 compute-sanitizer --tool memcheck --error-exitcode 99 $B/conformance --backend cuda --algo flash > $R/memcheck.txt 2>&1; echo "memcheck flash cols forced exit $?" | tee -a $R/log
grep -E "ERROR SUMMARY|conformance cuda" $R/memcheck.txt | tail -2 | tee -a $R/log
for c in d512_17x40 large_mag_br_70x150_d512; do
  POLYATTN_CUDA_COL_HALVES=1 timeout 120 compute-sanitizer --tool racecheck --error-exitcode 99 $B/conformance --backend cuda --case $c >> $R/racecheck.txt 2>&1; echo "racecheck $c cols forced exit $?" | tee -a $R/log
done
grep -E "RACECHECK SUMMARY|ERROR SUMMARY" $R/racecheck.txt | sort | uniq -c | tee -a $R/log
t sanitize; pack
cat > $R/shapes.txt <<'SH'
mw f32 8 1 1 1024 1024 1024 1 flash
mw f32 2 1 1 4096 4096 1024 1 flash
mw f32 64 1 1 512 512 512 1 flash
mw f32 16 1 1 512 512 768 0 flash
mw f32 8 1 1 1024 1024 512 0 flash
mw f32 4 8 8 256 256 1024 0 flash
mw f32 1 1 1 100 3000 1024 2 flash
SH
for r in 1 2; do for c in 0 1; do
  POLYATTN_CUDA_COL_HALVES=$c timeout 200 $B/polyattn_cuda_bench --reps 20 --graph 10 < $R/shapes.txt 2>>$R/log | sed "s/^{\"impl\":\"polyattn\"/{\"c\":$c,\"round\":$r,\"impl\":\"polyattn\"/" >> $R/ab.jsonl
done; t "round $r"; done
python3 - $R/ab.jsonl <<'PY' | tee $R/ab.md | tee -a $R/log
import json,sys
d={}; ok={}
for l in open(sys.argv[1]):
    if not l.startswith('{'): continue
    r=json.loads(l)
    if 'ms' not in r: continue
    k=(r['dtype'],r['batch'],r['heads_q'],r['seq_q'],r['seq_kv'],r['head_dim'],r['causal']); d.setdefault(k,{}).setdefault(r['c'],[]).append(r['ms']); ok[k]=ok.get(k,True) and r['ok']
print('| shape (batch x heads, seq_q x seq_kv, D, mask) | column halves off ms | on ms | speedup (best off / best on) | ok |'); print('|---|---|---|---|---|')
for k in sorted(d):
    a=d[k].get(0,[]); b=d[k].get(1,[])
    print('| %s %dx%d %dx%d D%d mask %s | %s | %s | %.3fx | %s |'%(k+(', '.join('%.4f'%x for x in a),', '.join('%.4f'%x for x in b),min(a)/min(b),ok[k])))
PY
t done; pack
