#!/bin/bash
# session 9 call 3: phase cycles of the wgmma kernel (-DPA_FLASH_PHASES, marks per key tile:
# K ready, Q K^T done, score exchange done, softmax done, V ready, P V done)
set -u
R=/tmp/s9c3; rm -rf $R; mkdir -p $R
S=$(date +%s)
t(){ echo "[$(( $(date +%s)-S )) s] $*" | tee -a $R/log; }
pack(){ tar czf $OUT/results.tgz -C $R . ; }
C=$(cat .gpu-kit/commit); echo "commit $C+wip" >> $R/log
CM="-G Ninja -S . -DCMAKE_BUILD_TYPE=Release -DPOLYATTN_CUDA=ON -DPOLYATTN_HIP=OFF -DPOLYATTN_OPENCL=OFF -DPOLYATTN_CUDA_ARCHITECTURES=90 -DPOLYATTN_WERROR=ON"
{ cmake $CM -B b-ph "-DCMAKE_CUDA_FLAGS=-DPA_FLASH_PHASES" && ninja -C b-ph -j16 polyattn_cuda polyattn_cuda_bench; } > $R/build.txt 2>&1 || { tail -30 $R/build.txt | tee -a $R/log; pack; exit 1; }
t build
for sh in "f16 16 1 1 128 128 512 1" "f16 8 1 1 512 512 768 1" "f16 1 1 1 4096 4096 512 1" "f16 4 4 4 1024 1024 512 0"; do
  tag=$(echo "$sh" | tr ' ' '_')
  echo "ph $sh flash" | POLYATTN_CUDA_WGMMA=1 timeout 60 b-ph/bin/polyattn_cuda_bench --reps 2 > $R/ph_$tag.txt 2>&1
  t "phases $sh exit $?"
done
python3 - $R <<'PY' | tee $R/phases.md | tee -a $R/log
import glob,os,sys,statistics as st
R=sys.argv[1]
names=['K ready','QK','exchange','softmax','V ready','PV']
for f in sorted(glob.glob(R+'/ph_*.txt')):
    last={}
    for l in open(f):
        if not l.startswith('PH '): continue
        x=list(map(int,l.split()[1:]))
        last[(x[0],x[3])]=x
    print('##',os.path.basename(f))
    if not last: print('no PH lines'); continue
    tiles=sorted({k[1] for k in last if k[1]>=0})
    print('| tile | blocks | '+' | '.join(names)+' | sum |'); print('|---'*(len(names)+3)+'|')
    for t in tiles:
        if t > 12 and t % 8: continue
        rows=[v[4:] for k,v in last.items() if k[1]==t]
        med=[st.median([r[j] for r in rows if r[j]>=0] or [0]) for j in range(6)]
        print('| %d | %d | %s | %d |'%(t,len(rows),' | '.join('%d'%m for m in med),sum(med)))
    ends=[v for k,v in last.items() if k[1]==-1]
    print('start->first mark median %d, last mark->end (epilogue) median %d'%(st.median([e[4] for e in ends]),st.median([e[5] for e in ends])))
PY
for f in $R/ph_*.txt; do grep "^PH" $f | tail -3000 > $f.x; mv $f.x $f; done
t done
pack
