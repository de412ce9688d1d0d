#!/bin/bash
# session 11 call 2: two K buffers (default where they fit) vs one (POLYATTN_CUDA_WGMMA_KBUFS=1), plans by the model; correctness, A/B, phases
set -u
R=/tmp/s11c2; rm -rf $R; mkdir -p $R
S=$(date +%s)
t(){ echo "[$(( $(date +%s)-S )) s] $*" | tee -a $R/log; tar czf $OUT/results.tgz -C $R . ; }
C=$(cat .gpu-kit/commit); echo "commit $C" >> $R/log
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.sm --format=csv >> $R/log 2>&1
CM="-G Ninja -DCMAKE_BUILD_TYPE=Release -DPOLYATTN_CUDA=ON -DPOLYATTN_HIP=OFF -DPOLYATTN_OPENCL=OFF -DPOLYATTN_CUDA_ARCHITECTURES=90 -DPOLYATTN_WERROR=ON"
{ cmake $CM -S . -B b-new && ninja -C b-new -j16 polyattn_cuda polyattn_cuda_bench conformance; } > $R/build.txt 2>&1 || { tail -30 $R/build.txt | tee -a $R/log; t fail; exit 1; }
( cmake $CM -S . -B b-ph "-DCMAKE_CUDA_FLAGS=-DPA_FLASH_PHASES" && ninja -C b-ph -j8 polyattn_cuda polyattn_cuda_bench ) > $R/build_ph.txt 2>&1 &
PHB=$!
t build
for kb in 2 1; do for p in wide narrow key-split; do
  POLYATTN_CUDA_WGMMA_KBUFS=$kb POLYATTN_CUDA_WGMMA_PLAN=$p timeout 20 b-new/bin/conformance --backend cuda --algo flash --dtype f16 --case large_mag_br_70x150_d512 > $R/smoke.txt 2>&1; rc=$?
  echo "smoke kbufs $kb $p exit $rc: $(grep -E '^conformance cuda' $R/smoke.txt)" | tee -a $R/log
  [ $rc = 0 ] || { tail -8 $R/smoke.txt | tee -a $R/log; t abort; exit 1; }
done; done
t smoke
python3 bench/gpu/seed_shapes.py check f16,bf16 > $R/checks.txt
cat >> $R/checks.txt <<'SH'
check f16 16 1 1 128 128 512 1 flash
check bf16 4 3 1 200 333 768 1 flash
check f16 3 2 2 130 64 512 0 flash
check bf16 1 1 1 1000 1000 512 1 flash
check f16 2 2 1 70 700 768 0 flash
check f16 1 1 1 300 900 512 2 flash
SH
for e in def wide narrow key-split; do
  if [ $e = def ]; then unset POLYATTN_CUDA_WGMMA_PLAN; else export POLYATTN_CUDA_WGMMA_PLAN=$e; fi
  timeout 90 b-new/bin/conformance --backend cuda --algo flash > $R/conf_$e.txt 2>&1; echo "exit $?" >> $R/conf_$e.txt
  echo "$e: $(grep -E '^conformance cuda|^exit' $R/conf_$e.txt | tr '\n' ' ')" | tee -a $R/log
  grep FAIL $R/conf_$e.txt | head -5 | tee -a $R/log
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
unset POLYATTN_CUDA_WGMMA_PLAN
t correctness
cat > $R/shapes.txt <<'SH'
s f16 16 1 1 128 128 512 1 flash
s bf16 16 1 1 128 128 512 1 flash
s f16 8 1 1 512 512 768 1 flash
x f16 8 1 1 128 128 512 1 flash
x f16 32 1 1 128 128 512 1 flash
x f16 16 1 1 128 128 512 0 flash
x f16 1 1 1 512 512 512 1 flash
x f16 2 1 1 1024 1024 512 1 flash
x f16 1 1 1 4096 4096 512 1 flash
x f16 4 4 4 1024 1024 512 0 flash
x f16 4 1 1 256 256 768 1 flash
x f16 64 1 1 128 128 512 1 flash
SH
for r in 1 2 3; do for e in kb2 kb1; do
  if [ $e = kb1 ]; then export POLYATTN_CUDA_WGMMA_KBUFS=1; else unset POLYATTN_CUDA_WGMMA_KBUFS; fi
  timeout 150 b-new/bin/polyattn_cuda_bench --reps 30 --graph 20 < $R/shapes.txt 2>>$R/log | sed "s/^{\"impl\":\"polyattn\"/{\"e\":\"$e\",\"round\":$r,\"impl\":\"polyattn\"/" >> $R/ab.jsonl
done; unset POLYATTN_CUDA_WGMMA_KBUFS; t "round $r"; done
python3 - $R/ab.jsonl <<'PY' | tee $R/ab.md | tee -a $R/log
import json,sys
d={}; ok={}
E=['kb1','kb2']
for l in open(sys.argv[1]):
    if not l.startswith('{'): continue
    r=json.loads(l)
    if 'ms' not in r or 'e' not in r: continue
    k=(r['dtype'],r['batch'],r['heads_q'],r['seq_q'],r['head_dim'],r['causal']); d.setdefault(k,{}).setdefault(r['e'],[]).append(r['ms']); ok[k]=ok.get(k,True) and r['ok']
print('| shape | one K buffer ms | two K buffers ms | speedup | ok |'); print('|---|---|---|---|---|')
for k in sorted(d):
    a=d[k].get('kb1',[]); b=d[k].get('kb2',[])
    print('| %s %dx%dx%d D%d causal %d | '%k+'%s | %s | %s | %s |'%(', '.join('%.4f'%x for x in a),', '.join('%.4f'%x for x in b),('%.3fx'%(min(a)/min(b))) if a and b else '-',ok[k]))
PY
grep -h '"plan"\|dispatch' $R/log | head -3
wait $PHB || tail -5 $R/build_ph.txt | tee -a $R/log
for kb in 1 2; do
  echo "ph f16 16 1 1 128 128 512 1 flash" | POLYATTN_CUDA_WGMMA_KBUFS=$kb timeout 60 b-ph/bin/polyattn_cuda_bench --reps 2 > $R/ph_16x128_kb$kb.txt 2>&1
done
python3 .gpu-kit/phases.py $R | tee $R/phases.md | tee -a $R/log
for f in $R/ph_*.txt; do grep "^P[HE]" $f | tail -3000 > $f.x; mv $f.x $f; done
t phases
POLYATTN_LOG=dispatch timeout 20 b-new/bin/polyattn_cuda_bench --reps 1 < $R/shapes.txt 2>&1 | grep -i "wgmma plan" | sort | uniq -c | tee -a $R/log
timeout 100 compute-sanitizer --tool memcheck b-new/bin/conformance --backend cuda --algo flash --dtype bf16 > $R/memcheck.txt 2>&1; echo "exit $?" >> $R/memcheck.txt
grep -E "ERROR SUMMARY|^conformance cuda|^exit" $R/memcheck.txt | tail -3 | tee -a $R/log
for p in wide narrow; do
POLYATTN_CUDA_WGMMA_PLAN=$p timeout 60 compute-sanitizer --tool racecheck b-new/bin/conformance --backend cuda --algo flash --dtype f16 --case large_mag_br_70x150_d512 > $R/racecheck_$p.txt 2>&1; echo "exit $?" >> $R/racecheck_$p.txt
grep -E "RACECHECK SUMMARY|^conformance cuda|^exit" $R/racecheck_$p.txt | tail -3 | tee -a $R/log
done
t done
