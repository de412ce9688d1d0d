#!/bin/bash
# session 10 call 2: chunked Q/K barriers (QK starts on the first 64-column blocks) + softmax
# trees/ex2.approx + split rule (chains >= 8): correctness, A/B against HEAD 8bf1bd3 (base10), phases
set -u
R=/tmp/s10c2; rm -rf $R; mkdir -p $R
S=$(date +%s)
t(){ echo "[$(( $(date +%s)-S )) s] $*" | tee -a $R/log; tar czf $OUT/results.tgz -C $R . ; }
C=$(cat .gpu-kit/commit); echo "commit $C+wip" >> $R/log
CM="-G Ninja -DCMAKE_BUILD_TYPE=Release -DPOLYATTN_CUDA=ON -DPOLYATTN_HIP=OFF -DPOLYATTN_OPENCL=OFF -DPOLYATTN_CUDA_ARCHITECTURES=90 -DPOLYATTN_WERROR=ON"
{ cmake $CM -S . -B b-new && ninja -C b-new -j16 polyattn_cuda polyattn_cuda_bench conformance; } > $R/build.txt 2>&1 || { tail -30 $R/build.txt | tee -a $R/log; t fail; exit 1; }
( cmake $CM -S . -B b-ph "-DCMAKE_CUDA_FLAGS=-DPA_FLASH_PHASES" && ninja -C b-ph -j8 polyattn_cuda polyattn_cuda_bench ) > $R/build_ph.txt 2>&1 &
PHB=$!
( cmake $CM -S .gpu-kit/base10 -B b-base && ninja -C b-base -j8 polyattn_cuda polyattn_cuda_bench ) > $R/build_base.txt 2>&1 &
BB=$!
t build
for e in def 1; do
  if [ $e = def ]; then unset POLYATTN_CUDA_WGMMA_SPLIT; else export POLYATTN_CUDA_WGMMA_SPLIT=$e; fi
  timeout 90 b-new/bin/conformance --backend cuda --algo flash > $R/conf_$e.txt 2>&1; echo "exit $?" >> $R/conf_$e.txt
  echo "split=$e: $(grep -E '^conformance|^exit' $R/conf_$e.txt | tr '\n' ' ')" | tee -a $R/log
  grep FAIL $R/conf_$e.txt | head -5 | tee -a $R/log
  python3 bench/gpu/seed_shapes.py check f16,bf16 > $R/checks.txt
  echo "check f16 16 1 1 128 128 512 1 flash" >> $R/checks.txt
  echo "check bf16 4 3 1 200 333 768 1 flash" >> $R/checks.txt
  echo "check f16 3 2 2 130 64 512 0 flash" >> $R/checks.txt
  echo "check bf16 1 1 1 1000 1000 512 1 flash" >> $R/checks.txt
  timeout 120 b-new/bin/polyattn_cuda_bench --reps 3 < $R/checks.txt > $R/checks_$e.jsonl 2>>$R/log
  python3 - $R/checks_$e.jsonl <<'PY' | tee -a $R/log
import json,sys
n=bad=0
for l in open(sys.argv[1]):
    if not l.startswith('{'): continue
    r=json.loads(l)
    if r.get('impl')!='polyattn': continue
    n+=1
    if not r.get('ok'): bad+=1; print('CHECK FAIL', l.strip()[:400])
print('checks: %d of %d ok'%(n-bad,n))
PY
done
unset POLYATTN_CUDA_WGMMA_SPLIT
t correctness
wait $BB || { tail -20 $R/build_base.txt | tee -a $R/log; }
cat > $R/shapes.txt <<'SH'
s f16 16 1 1 128 128 512 1 flash
s bf16 16 1 1 128 128 512 1 flash
s f16 8 1 1 512 512 768 1 flash
s bf16 8 1 1 512 512 768 1 flash
x f16 16 1 1 128 128 512 0 flash
x f16 1 1 1 4096 4096 512 1 flash
x f16 1 1 1 512 512 512 1 flash
x f16 2 1 1 1024 1024 512 1 flash
x f16 4 4 4 1024 1024 512 0 flash
x f16 32 1 1 128 128 512 1 flash
SH
for r in 1 2; do for e in base new; do
  timeout 150 b-$e/bin/polyattn_cuda_bench --reps 30 --graph 20 < $R/shapes.txt 2>>$R/log | sed "s/^{\"impl\":\"polyattn\"/{\"e\":\"$e\",\"round\":$r,\"impl\":\"polyattn\"/" >> $R/ab.jsonl
done; t "round $r"; done
python3 - $R/ab.jsonl <<'PY' | tee $R/ab.md | tee -a $R/log
import json,sys
d={}; ok={}
for l in open(sys.argv[1]):
    if not l.startswith('{'): continue
    r=json.loads(l)
    if 'ms' not in r or 'e' not in r: continue
    k=(r['dtype'],r['batch'],r['heads_q'],r['seq_q'],r['head_dim'],r['causal']); d.setdefault(k,{}).setdefault(r['e'],[]).append(r['ms']); ok.setdefault(k,{})[r['e']]=ok.get(k,{}).get(r['e'],True) and r['ok']
print('| shape | base ms | new ms | speedup | ok |'); print('|---|---|---|---|---|')
for k in sorted(d):
    a=d[k].get('base',[]); b=d[k].get('new',[])
    print('| %s %dx%dx%d D%d causal %d | %s | %s | %s | %s |'%(k+(', '.join('%.4f'%x for x in a),', '.join('%.4f'%x for x in b),('%.3fx'%(min(a)/min(b))) if a and b else '-',ok[k])))
PY
wait $PHB || tail -5 $R/build_ph.txt | tee -a $R/log
for sh in "f16 16 1 1 128 128 512 1" "f16 8 1 1 512 512 768 1"; do
  tag=$(echo "$sh" | tr ' ' '_')
  echo "ph $sh flash" | timeout 60 b-ph/bin/polyattn_cuda_bench --reps 2 > $R/ph_$tag.txt 2>&1
done
python3 .gpu-kit/phases.py $R | tee $R/phases.md | tee -a $R/log
for f in $R/ph_*.txt; do grep "^P[HE]" $f | tail -3000 > $f.x; mv $f.x $f; done
t phases
timeout 150 compute-sanitizer --tool memcheck b-new/bin/conformance --backend cuda --algo flash --dtype bf16 > $R/memcheck.txt 2>&1; echo "exit $?" >> $R/memcheck.txt
grep -E "ERROR SUMMARY|^conformance|^exit" $R/memcheck.txt | tail -3 | tee -a $R/log
timeout 100 compute-sanitizer --tool racecheck b-new/bin/conformance --backend cuda --algo flash --dtype f16 --case large_mag_br_70x150_d512 > $R/racecheck.txt 2>&1; echo "exit $?" >> $R/racecheck.txt
grep -E "RACECHECK SUMMARY|^conformance|^exit" $R/racecheck.txt | tail -3 | tee -a $R/log
t done
