#!/bin/bash
# session 5 call 5: in-kernel merge (POLYATTN_CUDA_FLASH_MERGE=1) vs the combine kernel (=0), same binary: lean chunk sweep + seed shapes default plan
set -u
R=/tmp/s5c5; rm -rf $R; mkdir -p $R
S=$(date +%s)
t(){ echo "[$(( $(date +%s)-S )) s] $*" | tee -a $R/log; }
pack(){ tar czf $OUT/results.tgz -C $R . ; }
CF="-G Ninja -DCMAKE_BUILD_TYPE=Release -DPOLYATTN_CUDA=ON -DPOLYATTN_HIP=OFF -DPOLYATTN_OPENCL=OFF -DPOLYATTN_CUDA_ARCHITECTURES=90"
cmake $CF -S . -B b-new > /dev/null && ninja -C b-new -j16 polyattn_cuda polyattn_cuda_bench > $R/build.txt 2>&1 || { tail -20 $R/build.txt; exit 1; }
t built
B=b-new/bin
cat > $R/chunks.txt <<'EOT'
0 s f16 8 1 1 512 512 768 1 flash
9 s f16 8 1 1 512 512 768 1 flash
10 s f16 8 1 1 512 512 768 1 flash
12 s f16 8 1 1 512 512 768 1 flash
0 s bf16 8 1 1 512 512 768 1 flash
9 s bf16 8 1 1 512 512 768 1 flash
0 s f16 16 1 1 128 128 512 1 flash
1 s f16 16 1 1 128 128 512 1 flash
2 s f16 16 1 1 128 128 512 1 flash
0 s f32 16 1 1 128 128 512 1 flash
1 s f32 16 1 1 128 128 512 1 flash
2 s f32 16 1 1 128 128 512 1 flash
3 s f32 16 1 1 128 128 512 1 flash
0 s f32 8 1 1 512 512 768 1 flash
17 s f32 8 1 1 512 512 768 1 flash
0 s f16 4 1 1 1024 1024 1024 1 flash
16 s f16 4 1 1 1024 1024 1024 1 flash
EOT
for r in 1 2; do for mg in 0 1; do
  while read ch rest; do
    echo "$rest" | POLYATTN_CUDA_FLASH_MERGE=$mg POLYATTN_CUDA_FLASH_SPLIT=$ch timeout 30 $B/polyattn_cuda_bench --reps 30 | grep -v device | sed "s/^{/{\"merge\":$mg,\"chunk\":$ch,\"round\":$r,/" >> $R/sweep.jsonl
  done < $R/chunks.txt
  t "sweep r$r m$mg"
done; pack; done
for r in 1 2; do for mg in 0 1; do
  python3 bench/gpu/seed_shapes.py seed | POLYATTN_CUDA_FLASH_MERGE=$mg timeout 90 $B/polyattn_cuda_bench | grep -v device | sed "s/^{/{\"merge\":$mg,\"chunk\":-1,\"round\":$r,/" >> $R/sweep.jsonl
  t "seed r$r m$mg"
done; pack; done
python3 -c "
import json
best={}
for l in open('$R/sweep.jsonl'):
    r=json.loads(l)
    if 'ms' not in r or not r.get('ok'): print('NOT OK', l[:200]); continue
    k=(r['dtype'],r['batch'],r['seq_q'],r['chunk'])
    best.setdefault(k,{})
    best[k][r['merge']]=min(best[k].get(r['merge'],9),r['ms'])
for k in sorted(best): print(k, ' '.join('m%d %.4f'%(m,v) for m,v in sorted(best[k].items())))
" | tee $R/sweep.txt
rm -f $R/build.txt
pack; t done
