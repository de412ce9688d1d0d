#!/bin/bash
# session 7 call 2: schedules timed as CUDA-graph replays (GPU time): auto, key halves off/on,
# balanced chunks 1/2/4, small and seed shapes; SDPA efficient and math as graphs beside
set -u
R=/tmp/s7c2; rm -rf $R; mkdir -p $R
S=$(date +%s)
t(){ echo "[$(( $(date +%s)-S )) s] $*" | tee -a $R/log; }
pack(){ tar czf $OUT/results.tgz -C $R . ; }
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv >> $R/log 2>&1
CM="-G Ninja -S . -DCMAKE_BUILD_TYPE=Release -DPOLYATTN_CUDA=ON -DPOLYATTN_HIP=OFF -DPOLYATTN_OPENCL=OFF -DPOLYATTN_CUDA_ARCHITECTURES=90 -DPOLYATTN_WERROR=ON"
{ cmake $CM -B b-new && ninja -C b-new -j16 polyattn_cuda polyattn_cuda_bench; } > $R/build.txt 2>&1 || { tail -30 $R/build.txt | tee -a $R/log; pack; exit 1; }
t build
cat > $R/shapes.txt <<'SH'
sw f16 16 1 1 128 128 512 1 flash
sw bf16 16 1 1 128 128 512 1 flash
sw f16 32 1 1 128 128 512 1 flash
sw f16 16 1 1 256 256 512 1 flash
sw f16 4 1 1 512 512 768 1 flash
sw f16 8 1 1 512 512 768 1 flash
sw f16 4 1 1 1024 1024 1024 1 flash
sw f32 16 1 1 128 128 512 1 flash
sw f32 8 1 1 512 512 768 1 flash
sw f32 32 1 1 128 128 512 1 flash
SH
for r in 1 2; do for cfg in auto h0 h1 s1 s2 s4; do
  unset POLYATTN_CUDA_KEY_HALVES POLYATTN_CUDA_FLASH_SPLIT
  case $cfg in h0) export POLYATTN_CUDA_KEY_HALVES=0;; h1) export POLYATTN_CUDA_KEY_HALVES=1;; s1) export POLYATTN_CUDA_FLASH_SPLIT=1;; s2) export POLYATTN_CUDA_FLASH_SPLIT=2;; s4) export POLYATTN_CUDA_FLASH_SPLIT=4;; esac
  timeout 100 b-new/bin/polyattn_cuda_bench --reps 30 --graph 20 < $R/shapes.txt 2>>$R/log | sed "s/^{\"impl\":\"polyattn\"/{\"cfg\":\"$cfg\",\"round\":$r,\"impl\":\"polyattn\"/" >> $R/sweep.jsonl
done; done
unset POLYATTN_CUDA_KEY_HALVES POLYATTN_CUDA_FLASH_SPLIT
t sweep
python3 bench/gpu/seed_shapes.py seed > $R/seed.txt
cat $R/seed.txt $R/shapes.txt | sort -u > $R/all.txt
PYTHONUNBUFFERED=1 timeout 200 python3 bench/compare_torch.py --torch-backends efficient,math --shape-lines $R/all.txt --graph 20 --jsonl - > $R/torch_graph.jsonl 2>>$R/log
t torch
python3 - $R <<'PY' | tee $R/table.md | tee -a $R/log
import json,sys,os
R=sys.argv[1]
best={}; ok={}
for l in open(os.path.join(R,'sweep.jsonl')):
    if not l.startswith('{'): continue
    r=json.loads(l)
    if 'ms' not in r: continue
    k=(r['dtype'],r['batch'],r['seq_q'],r['head_dim']); c=r['cfg']
    best.setdefault(k,{}); best[k][c]=min(best[k].get(c,9e9),r['ms']); ok[(k,c)]=ok.get((k,c),True) and r['ok']
sd={}
for l in open(os.path.join(R,'torch_graph.jsonl')):
    if not l.startswith('{'): continue
    r=json.loads(l)
    if r.get('ok') and 'ms' in r: sd[(r['impl'],r['dtype'],r['batch'],r['seq_q'],r['head_dim'])]=r['ms']
cfgs=['auto','h0','h1','s1','s2','s4']
print('| shape | '+' | '.join(cfgs)+' | SDPA efficient | SDPA math | auto ratio (eff) |'); print('|---'*(len(cfgs)+4)+'|')
for k in sorted(best):
    b=best[k]; e=sd.get(('torch-efficient',)+k); m=sd.get(('torch-math',)+k)
    print('| %s %dx%d D%d | '%k+' | '.join(('%.4f'%b[c]+('' if ok[(k,c)] else ' BAD')) if c in b else '-' for c in cfgs)+' | %s | %s | %s |'%('%.4f'%e if e else '-','%.4f'%m if m else '-','%.2fx'%(e/b['auto']) if e and 'auto' in b else '-'))
print()
print('| SDPA graph | efficient | math |'); print('|---|---|---|')
for k in sorted(set(x[1:] for x in sd)):
    print('| %s %dx%d D%d | '%k+' | '.join('%.4f'%sd[(i,)+k] if (i,)+k in sd else '-' for i in ('torch-efficient','torch-math'))+' |')
PY
t done; pack
