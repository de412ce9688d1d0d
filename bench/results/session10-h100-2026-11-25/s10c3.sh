#!/bin/bash
# session 10 call 3: diagnostics: epilogue variants (var1: no store; var2: O straight from
# registers, no staging) and L2-warm inputs (--sets 1), phases and graph time
set -u
R=/tmp/s10c3; rm -rf $R; mkdir -p $R
S=$(date +%s)
t(){ echo "[$(( $(date +%s)-S )) s] $*" | tee -a $R/log; tar czf $OUT/results.tgz -C $R . ; }
C=$(cat .gpu-kit/commit); echo "commit $C+wip" >> $R/log
CM="-G Ninja -DCMAKE_BUILD_TYPE=Release -DPOLYATTN_CUDA=ON -DPOLYATTN_HIP=OFF -DPOLYATTN_OPENCL=OFF -DPOLYATTN_CUDA_ARCHITECTURES=90"
PH="-DCMAKE_CUDA_FLAGS=-DPA_FLASH_PHASES"
bld(){ ( cmake $CM -S $1 -B $2 "${@:3}" && ninja -C $2 -j5 polyattn_cuda polyattn_cuda_bench ) > $R/build_$(basename $2).txt 2>&1 || echo "BUILD FAIL $2" | tee -a $R/log; }
bld . b-new & bld . b-ph "$PH" & bld .gpu-kit/var1 b-v1ph "$PH" & bld .gpu-kit/var2 b-v2 & bld .gpu-kit/var2 b-v2ph "$PH" &
wait
t build
cat > $R/shapes.txt <<'SH'
s f16 16 1 1 128 128 512 1 flash
s bf16 16 1 1 128 128 512 1 flash
s f16 8 1 1 512 512 768 1 flash
SH
for r in 1 2; do for e in new v2; do for st in 0 1; do
  a=""; [ $st = 1 ] && a="--sets 1"
  timeout 100 b-$e/bin/polyattn_cuda_bench --reps 30 --graph 20 $a < $R/shapes.txt 2>>$R/log | sed "s/^{\"impl\":\"polyattn\"/{\"e\":\"$e-sets$st\",\"round\":$r,\"impl\":\"polyattn\"/" >> $R/ab.jsonl
done; done; t "round $r"; done
python3 - $R/ab.jsonl <<'PY' | tee $R/ab.md | tee -a $R/log
import json,sys
d={}
for l in open(sys.argv[1]):
    if not l.startswith('{'): continue
    r=json.loads(l)
    if 'ms' not in r or 'e' not in r: continue
    k=(r['dtype'],r['batch'],r['seq_q'],r['head_dim']); d.setdefault(k,{}).setdefault(r['e'],[]).append((r['ms'],r['ok']))
for k in sorted(d):
    print(k, ' | '.join('%s %s'%(e, ','.join('%.4f%s'%(m,'' if o else '!') for m,o in v)) for e,v in sorted(d[k].items())))
PY
for b in ph v1ph v2ph; do for st in 0 1; do
  a=""; [ $st = 1 ] && a="--sets 1"
  for sh in "f16 16 1 1 128 128 512 1" "f16 8 1 1 512 512 768 1"; do
    tag=$(echo "$sh" | tr ' ' '_')
    echo "ph $sh flash" | timeout 60 b-$b/bin/polyattn_cuda_bench --reps 2 $a > $R/ph_${b}_sets${st}_$tag.txt 2>&1
  done
done; done
python3 .gpu-kit/phases.py $R | tee $R/phases.md | tee -a $R/log
for f in $R/ph_*.txt; do grep "^P[HE]" $f | tail -3000 > $f.x; mv $f.x $f; done
t done
