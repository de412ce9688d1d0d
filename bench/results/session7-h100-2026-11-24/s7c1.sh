#!/bin/bash
# session 7 call 1: (a) seed shapes timed per call (events) and as CUDA-graph replays, polyattn
# and SDPA efficient in the same run; (b) 8x512 D768: what the wide kernel's K/V refills cost
# (a no-refill build, wrong results, timing only); (c) block timelines (8x512 f16, 16x128)
set -u
R=/tmp/s7c1; rm -rf $R; mkdir -p $R
S=$(date +%s)
t(){ echo "[$(( $(date +%s)-S )) s] $*" | tee -a $R/log; }
pack(){ tar czf $OUT/results.tgz -C $R . ; }
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv >> $R/log 2>&1
CM="-G Ninja -S . -DCMAKE_BUILD_TYPE=Release -DPOLYATTN_CUDA=ON -DPOLYATTN_HIP=OFF -DPOLYATTN_OPENCL=OFF -DPOLYATTN_CUDA_ARCHITECTURES=90 -DPOLYATTN_WERROR=ON"
build(){ { cmake $CM -B $1 "-DCMAKE_CUDA_FLAGS=$2" && ninja -C $1 -j16 polyattn_cuda polyattn_cuda_bench; } > $R/build_$1.txt 2>&1 || { tail -30 $R/build_$1.txt | tee -a $R/log; pack; exit 1; }; }
build b-new ""
build b-tl "-DPA_FLASH_TIMELINE"
build b-nr "-DPA_WIDE_NO_REFILL"
t builds
python3 bench/gpu/seed_shapes.py seed > $R/seed.txt
for r in 1 2; do
  timeout 120 b-new/bin/polyattn_cuda_bench --reps 50 < $R/seed.txt 2>>$R/log | sed "s/^{\"impl\":\"polyattn\"/{\"round\":$r,\"impl\":\"polyattn\"/" >> $R/pa_events.jsonl
  timeout 120 b-new/bin/polyattn_cuda_bench --reps 30 --graph 20 < $R/seed.txt 2>>$R/log | sed "s/^{\"impl\":\"polyattn\"/{\"round\":$r,\"impl\":\"polyattn\"/" >> $R/pa_graph.jsonl
done
t polyattn
PYTHONUNBUFFERED=1 timeout 150 python3 bench/compare_torch.py --torch-backends efficient --shape-lines $R/seed.txt --jsonl - > $R/torch_events.jsonl 2>>$R/log
PYTHONUNBUFFERED=1 timeout 150 python3 bench/compare_torch.py --torch-backends efficient --shape-lines $R/seed.txt --graph 20 --jsonl - > $R/torch_graph.jsonl 2>>$R/log
t torch
python3 - $R <<'PY' | tee $R/table.md | tee -a $R/log
import json,sys,os
R=sys.argv[1]
def load(f,impl):
    best={}; ok={}
    for l in open(os.path.join(R,f)):
        if not l.startswith('{'): continue
        r=json.loads(l)
        if r.get('impl')!=impl or 'ms' not in r: continue
        k=(r['dtype'],r['batch'],r['seq_q'],r['head_dim'])
        best[k]=min(best.get(k,9e9),r['ms']); ok[k]=ok.get(k,True) and bool(r.get('ok'))
    return best,ok
pe,ok=load('pa_events.jsonl','polyattn'); pg,okg=load('pa_graph.jsonl','polyattn')
te,_=load('torch_events.jsonl','torch-efficient'); tg,_=load('torch_graph.jsonl','torch-efficient')
print('| dtype | shape | polyattn events | polyattn graph | SDPA events | SDPA graph | ratio events | ratio graph | ok |')
print('|---|---|---|---|---|---|---|---|---|')
order={'f16':0,'bf16':1,'f32':2}
for k in sorted(pe,key=lambda k:(order[k[0]],-k[2])):
    f=lambda d: '%.4f'%d[k] if k in d else '-'
    r=lambda a,b: '%.2fx'%(b[k]/a[k]) if k in a and k in b else '-'
    print('| %s | %dx%d D%d | %s | %s | %s | %s | %s | %s | %s |'%(k[0],k[1],k[2],k[3],f(pe),f(pg),f(te),f(tg),r(pe,te),r(pg,tg),ok.get(k) and okg.get(k)))
PY
pack
# (b) refill cost at 8x512 D768 (and 1x512, 16x512), key halves on (default) and off
for dt in f16 bf16; do for b in 1 8 16; do echo "diag $dt $b 1 1 512 512 768 1 flash"; done; done > $R/diag.txt
for bin in b-new b-nr; do for kh in default 0; do
  if [ $kh = default ]; then unset POLYATTN_CUDA_KEY_HALVES; else export POLYATTN_CUDA_KEY_HALVES=0; fi
  timeout 60 $bin/bin/polyattn_cuda_bench --reps 30 --graph 20 < $R/diag.txt 2>>$R/log | sed "s/^{\"impl\":\"polyattn\"/{\"bin\":\"$bin\",\"halves\":\"$kh\",\"impl\":\"polyattn\"/" >> $R/diag.jsonl
done; done
unset POLYATTN_CUDA_KEY_HALVES
python3 - $R/diag.jsonl <<'PY' | tee $R/diag.md | tee -a $R/log
import json,sys
print('| build | key halves | shape | ms (graph) | ok |'); print('|---|---|---|---|---|')
for l in open(sys.argv[1]):
    if not l.startswith('{'): continue
    r=json.loads(l)
    if 'ms' in r: print('| %s | %s | %s %dx%d | %.4f | %s |'%(r['bin'],r['halves'],r['dtype'],r['batch'],r['seq_q'],r['ms'],r['ok']))
PY
t diag; pack
# (c) timelines (one shape per run)
tl(){ name=$1; shift; echo "$*" | timeout 60 b-tl/bin/polyattn_cuda_bench --reps 5 > $R/tl_$name.txt 2>&1; echo "## $name ($*) ${POLYATTN_CUDA_KEY_HALVES:+halves=$POLYATTN_CUDA_KEY_HALVES}" >> $R/timeline.md; python3 bench/gpu/timeline.py $R/tl_$name.txt >> $R/timeline.md 2>&1; }
tl f16_8x512 "tl f16 8 1 1 512 512 768 1 flash"
tl f16_1x512 "tl f16 1 1 1 512 512 768 1 flash"
tl f32_16x128 "tl f32 16 1 1 128 128 512 1 flash"
tl f16_16x128 "tl f16 16 1 1 128 128 512 1 flash"
export POLYATTN_CUDA_KEY_HALVES=0
tl f16_8x512_unsplit "tl f16 8 1 1 512 512 768 1 flash"
tl f32_16x128_unsplit "tl f32 16 1 1 128 128 512 1 flash"
unset POLYATTN_CUDA_KEY_HALVES
gzip $R/tl_*.txt
cat $R/timeline.md
t done; pack
