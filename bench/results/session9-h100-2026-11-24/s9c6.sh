#!/bin/bash
# session 9 call 6: wgmma kernel (TMA issue over warps, TMA store, lazy rescale, default on): correctness, A/B (POLYATTN_CUDA_WGMMA=0 vs default), phases
# sweep (for the rule), phases
set -u
R=/tmp/s9c6; rm -rf $R; mkdir -p $R
S=$(date +%s)
t(){ echo "[$(( $(date +%s)-S )) s] $*" | tee -a $R/log; }
pack(){ tar czf $OUT/results.tgz -C $R . ; }
C=$(cat .gpu-kit/commit); echo "commit $C+wip" >> $R/log
CM="-G Ninja -S . -DCMAKE_BUILD_TYPE=Release -DPOLYATTN_CUDA=ON -DPOLYATTN_HIP=OFF -DPOLYATTN_OPENCL=OFF -DPOLYATTN_CUDA_ARCHITECTURES=90 -DPOLYATTN_WERROR=ON"
{ cmake $CM -B b-new && ninja -C b-new -j16 polyattn_cuda polyattn_cuda_bench conformance; } > $R/build.txt 2>&1 || { tail -30 $R/build.txt | tee -a $R/log; pack; exit 1; }
t build
POLYATTN_CUDA_WGMMA=1 timeout 60 b-new/bin/conformance --backend cuda --algo flash > $R/conf_wg.txt 2>&1; echo "exit $?" >> $R/conf_wg.txt
grep -E "^conformance|FAIL|^exit" $R/conf_wg.txt | head -20 | tee -a $R/log
python3 bench/gpu/seed_shapes.py check f16,bf16 > $R/checks.txt
POLYATTN_CUDA_WGMMA=1 timeout 120 b-new/bin/polyattn_cuda_bench --reps 3 < $R/checks.txt > $R/checks.jsonl 2>>$R/log
python3 - $R/checks.jsonl <<'PY' | tee -a $R/log
import json,sys
n=bad=0
for l in open(sys.argv[1]):
    if not l.startswith('{'): continue
    r=json.loads(l)
    if r.get('impl')!='polyattn': continue
    n+=1
    if not r.get('ok'): bad+=1; print('CHECK FAIL', l.strip()[:400])
print('checks (wgmma): %d of %d ok'%(n-bad,n))
PY
t checks
cat > $R/shapes.txt <<'SH'
s f16 8 1 1 512 512 768 1 flash
s f16 16 1 1 128 128 512 1 flash
s bf16 8 1 1 512 512 768 1 flash
s bf16 16 1 1 128 128 512 1 flash
x f16 32 1 1 128 128 512 1 flash
x f16 4 1 1 512 512 768 1 flash
x f16 1 1 1 512 512 768 1 flash
x f16 1 1 1 4096 4096 512 1 flash
x f16 1 1 1 4096 4096 768 1 flash
x f16 2 1 1 2048 2048 768 1 flash
x f16 4 4 4 1024 1024 512 0 flash
x f16 4 4 4 1024 1024 512 1 flash
x f16 16 1 1 256 256 512 1 flash
x f16 16 1 1 128 128 768 1 flash
x f16 8 1 1 128 128 512 1 flash
x f16 2 8 8 2048 2048 512 0 flash
SH
for r in 1 2; do for e in 0 1; do
  POLYATTN_CUDA_WGMMA=$e timeout 150 b-new/bin/polyattn_cuda_bench --reps 30 --graph 20 < $R/shapes.txt 2>>$R/log | sed "s/^{\"impl\":\"polyattn\"/{\"e\":$e,\"round\":$r,\"impl\":\"polyattn\"/" >> $R/ab.jsonl
done; t "round $r"; done
python3 - $R/ab.jsonl <<'PY' | tee $R/ab.md | tee -a $R/log
import json,sys
d={}; ok={}
for l in open(sys.argv[1]):
    if not l.startswith('{'): continue
    r=json.loads(l)
    if 'ms' not in r: continue
    k=(r['dtype'],r['batch'],r['heads_q'],r['seq_q'],r['head_dim'],r['causal']); d.setdefault(k,{}).setdefault(r['e'],[]).append(r['ms']); ok.setdefault(k,{})[r['e']]=ok.get(k,{}).get(r['e'],True) and r['ok']
print('| shape | mma.sync ms | wgmma ms | speedup | ok (mma.sync, wgmma) |'); print('|---|---|---|---|---|')
for k in sorted(d):
    a=d[k].get(0,[]); b=d[k].get(1,[])
    print('| %s %dx%dx%d D%d causal %d | %s | %s | %s | %s |'%(k+(', '.join('%.4f'%x for x in a),', '.join('%.4f'%x for x in b),('%.3fx'%(min(a)/min(b))) if a and b else '-',ok[k])))
PY
{ cmake $CM -B b-ph "-DCMAKE_CUDA_FLAGS=-DPA_FLASH_PHASES" && ninja -C b-ph -j16 polyattn_cuda polyattn_cuda_bench; } > $R/build_ph.txt 2>&1 || tail -5 $R/build_ph.txt
for sh in "f16 16 1 1 128 128 512 1" "f16 8 1 1 512 512 768 1" "f16 1 1 1 4096 4096 512 1"; do
  tag=$(echo "$sh" | tr ' ' '_')
  echo "ph $sh flash" | POLYATTN_CUDA_WGMMA=1 timeout 60 b-ph/bin/polyattn_cuda_bench --reps 2 > $R/ph_$tag.txt 2>&1
done
python3 .gpu-kit/phases.py $R | tee $R/phases.md | tee -a $R/log
for f in $R/ph_*.txt; do grep "^PH" $f | tail -3000 > $f.x; mv $f.x $f; done
POLYATTN_CUDA_WGMMA=1 timeout 200 compute-sanitizer --tool memcheck b-new/bin/conformance --backend cuda --algo flash > $R/memcheck.txt 2>&1; echo "exit $?" >> $R/memcheck.txt
grep -E "ERROR SUMMARY|^conformance|^exit" $R/memcheck.txt | tail -3 | tee -a $R/log
t done
pack
