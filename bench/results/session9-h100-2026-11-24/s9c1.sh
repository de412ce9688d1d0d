#!/bin/bash
# session 9 call 1: (a) launch floor of a graph of tiny kernels shaped like the wide flash
# kernel, with/without programmatic dependent launch; (b) per-key-tile phase cycles of the 16-bit
# wide kernel (-DPA_FLASH_PHASES) at 16x128 D512 and 8x512 D768; (c) POLYATTN_CUDA_EARLY_LAUNCH
# 0/1 alternating on the seed shapes (graph), and conformance with it on
set -u
R=/tmp/s9c1; rm -rf $R; mkdir -p $R
S=$(date +%s)
t(){ echo "[$(( $(date +%s)-S )) s] $*" | tee -a $R/log; }
pack(){ tar czf $OUT/results.tgz -C $R . ; }
C=$(cat .gpu-kit/commit); echo "commit $C+wip" >> $R/log
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv >> $R/log 2>&1
nvcc -O2 -arch=sm_90 -o $R/lf .gpu-kit/launch_floor.cu > $R/lf_build.txt 2>&1 && timeout 60 $R/lf > $R/launch_floor.txt 2>&1
t "launch floor"; cat $R/launch_floor.txt >> $R/log
CM="-G Ninja -S . -DCMAKE_BUILD_TYPE=Release -DPOLYATTN_CUDA=ON -DPOLYATTN_HIP=OFF -DPOLYATTN_OPENCL=OFF -DPOLYATTN_CUDA_ARCHITECTURES=90 -DPOLYATTN_WERROR=ON"
build(){ { cmake $CM -B $1 "-DCMAKE_CUDA_FLAGS=$2" && ninja -C $1 -j16 $3; } > $R/build_$1.txt 2>&1 || { tail -30 $R/build_$1.txt | tee -a $R/log; pack; exit 1; }; }
build b-new "" "polyattn_cuda polyattn_cuda_bench conformance"
t "build new"
build b-ph "-DPA_FLASH_PHASES" "polyattn_cuda polyattn_cuda_bench"
t "build phases"
for sh in "f16 16 1 1 128 128 512 1:" "f16 16 1 1 128 128 512 1:POLYATTN_CUDA_COL_HALVES=0" "f16 8 1 1 512 512 768 1:" "f16 8 1 1 512 512 768 1:POLYATTN_CUDA_KEY_HALVES=0"; do
  shape=${sh%%:*}; envs=${sh#*:}; tag=$(echo "$shape $envs" | tr ' =' '__')
  echo "ph $shape flash" | env $envs timeout 60 b-ph/bin/polyattn_cuda_bench --reps 2 > $R/ph_$tag.txt 2>&1
  t "phases $shape $envs exit $?"
done
python3 - $R <<'PY' | tee $R/phases.md | tee -a $R/log
import glob,os,sys,statistics as st
R=sys.argv[1]
names=['K ready','QK','scores sync','softmax','sync+V ready','PV']
for f in sorted(glob.glob(R+'/ph_*.txt')):
    last={}
    for l in open(f):
        if not l.startswith('PH '): continue
        x=list(map(int,l.split()[1:]))
        last[(x[0],x[3])]=x
    print('##',os.path.basename(f))
    if not last: print('no PH lines'); continue
    # per key-tile index: median cycles of each mark over blocks
    tiles=sorted({k[1] for k in last if k[1]>=0})
    print('| tile | blocks | '+' | '.join(names)+' | sum |'); print('|---'*(len(names)+3)+'|')
    for t in tiles:
        rows=[v[4:] for k,v in last.items() if k[1]==t]
        med=[st.median([r[j] for r in rows if r[j]>=0] or [0]) for j in range(6)]
        print('| %d | %d | %s | %d |'%(t,len(rows),' | '.join('%d'%m for m in med),sum(med)))
    ends=[v for k,v in last.items() if k[1]==-1]
    print('start->first mark median %d, last mark->end median %d; by key tiles: %s'%(st.median([e[4] for e in ends]),st.median([e[5] for e in ends]),
      {n:len([e for e in ends if e[2]==n]) for n in sorted({e[2] for e in ends})}))
PY
python3 bench/gpu/seed_shapes.py seed > $R/seed.txt
cat >> $R/seed.txt <<'SH'
x f16 32 1 1 128 128 512 1 flash
x f16 4 1 1 512 512 768 1 flash
x f16 8 4 4 1024 1024 128 1 flash
SH
for r in 1 2 3; do for e in 0 1; do
  POLYATTN_CUDA_EARLY_LAUNCH=$e timeout 150 b-new/bin/polyattn_cuda_bench --reps 30 --graph 20 < $R/seed.txt 2>>$R/log | sed "s/^{\"impl\":\"polyattn\"/{\"e\":$e,\"round\":$r,\"impl\":\"polyattn\"/" >> $R/ab.jsonl
done; t "round $r"; done
python3 - $R/ab.jsonl <<'PY' | tee $R/ab.md | tee -a $R/log
import json,sys
d={}; ok={}
for l in open(sys.argv[1]):
    if not l.startswith('{'): continue
    r=json.loads(l)
    if 'ms' not in r: continue
    k=(r['dtype'],r['batch'],r['heads_q'],r['seq_q'],r['head_dim'],r['causal']); d.setdefault(k,{}).setdefault(r['e'],[]).append(r['ms']); ok[k]=ok.get(k,True) and r['ok']
print('| shape | early off ms (3 rounds) | early on ms | speedup (best off / best on) | ok |'); print('|---|---|---|---|---|')
for k in sorted(d):
    a=d[k].get(0,[]); b=d[k].get(1,[])
    print('| %s %dx%dx%d D%d causal %d | %s | %s | %.3fx | %s |'%(k+(', '.join('%.4f'%x for x in a),', '.join('%.4f'%x for x in b),min(a)/min(b),ok[k])))
PY
POLYATTN_CUDA_EARLY_LAUNCH=1 timeout 120 b-new/bin/conformance --backend cuda --algo flash > $R/conf_early.txt 2>&1; echo "exit $?" >> $R/conf_early.txt
POLYATTN_CUDA_EARLY_LAUNCH=1 POLYATTN_CUDA_FLASH_SPLIT=1 timeout 120 b-new/bin/conformance --backend cuda --algo flash >> $R/conf_early.txt 2>&1; echo "exit $?" >> $R/conf_early.txt
grep -E "^conformance|FAIL|^exit" $R/conf_early.txt | head | tee -a $R/log
t done
pack
