#!/bin/bash
# The polyattn CLI on a CUDA machine, from the repository root:
#   build (CUDA on, -j16), ctest -L cli, `polyattn devices`, `polyattn run --backend cuda`
#   over every algo x dtype checked by bench/check_run.py (float64 NumPy), `explain` of the
#   article shapes, then `polyattn bench` suites.  Results in $OUT (default ./cli-gpu-out):
#     cli_gpu.log   everything printed;  <suite>.json / <suite>.csv  bench reports
# Environment: STAGES="build test run explain bench" (subset), SUITES="article decode fa2",
#   ARCH (CUDA architectures, default 90), BUILD (dir), REPS (default 20), ALGOS (default
#   all), MAX_SECONDS (per measurement, default 10).
set -u
OUT=${OUT:-$PWD/cli-gpu-out}
BUILD=${BUILD:-build-gpu-cli}
ARCH=${ARCH:-90}
STAGES=${STAGES:-build test run explain bench}
SUITES=${SUITES:-article decode fa2}
REPS=${REPS:-20}
mkdir -p "$OUT"
LOG=$OUT/cli_gpu.log
has() { case " $STAGES " in *" $1 "*) return 0;; esac; return 1; }
say() { echo "== $*" | tee -a "$LOG"; }
P=$BUILD/bin/polyattn
PY=${PYTHON:-python3}

say "$(date -u +%FT%TZ) commit $(git rev-parse --short HEAD 2>/dev/null) $(git status --porcelain 2>/dev/null | wc -l) uncommitted paths"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >>"$LOG" 2>&1

if has build; then
  say "build (arch $ARCH)"
  start=$(date +%s)
  if ! { cmake -G Ninja -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DPOLYATTN_CUDA=ON \
           -DPOLYATTN_HIP=OFF -DPOLYATTN_OPENCL=OFF -DPOLYATTN_WERROR=ON \
           -DPOLYATTN_CUDA_ARCHITECTURES="$ARCH" &&
         ninja -C "$BUILD" -j16 polyattn_cli polyattn_cli_npy_fixture polyattn_cuda; } >"$OUT/build.txt" 2>&1; then
    tail -40 "$OUT/build.txt" | tee -a "$LOG"
    exit 1
  fi
  say "build took $(( $(date +%s) - start )) s"
  rm -f "$OUT/build.txt"
fi

if has test; then
  say "ctest -L cli"
  (cd "$BUILD" && ctest -L cli --output-on-failure 2>&1 | tail -15) >>"$LOG" 2>&1
  say "polyattn devices"
  "$P" devices >>"$LOG" 2>&1
fi

if has run; then
  say "polyattn run --backend cuda vs float64 numpy (error relative to max |O|)"
  work=$(mktemp -d)
  # name shape(b,hq,hkv,sq,skv,d[,dv]) causal scale
  while read -r name shape causal scale; do
    "$PY" bench/make_inputs.py --shape "$shape" --dir "$work/$name" --seed 3 >/dev/null
    for algo in auto unfused fused flash; do
      for dtype in f32 f16 bf16; do
        case $dtype in f32) tol=1e-4 ;; f16) tol=2e-3 ;; bf16) tol=2e-2 ;; esac
        io="--q $work/$name/q.npy --k $work/$name/k.npy --v $work/$name/v.npy --out $work/o.npy --lse $work/l.npy"
        opt=""
        [ "$causal" != none ] && opt="--causal $causal"
        [ "$scale" != default ] && opt="$opt --scale $scale"
        rm -f "$work/o.npy" "$work/l.npy"
        res=$("$P" run $io $opt --backend cuda --algo "$algo" --dtype "$dtype" --json 2>&1)
        rc=$?
        if [ $rc -ne 0 ]; then
          echo "$name $algo $dtype: exit $rc: $res" >>"$LOG"
          continue
        fi
        chosen=$(echo "$res" | sed 's/.*"algo": "\([a-z]*\)".*/\1/')
        ms=$(echo "$res" | sed 's/.*"ms": \([0-9.e+-]*\).*/\1/')
        chk=$("$PY" bench/check_run.py $io $opt --rtol "$tol" 2>&1 | tr '\n' ' ')
        echo "$name $algo>$chosen $dtype ${ms}ms: $chk" >>"$LOG"
      done
    done
  done <<EOF
paper 2,3,3,37,53,40 bottom-right 0.3
gqa 2,8,2,129,257,128 top-left default
masked 1,4,1,300,77,64 bottom-right default
wide 1,2,2,65,190,256,96 none default
EOF
  rm -rf "$work"
fi

if has explain; then
  say "polyattn explain --backend cuda: the article shapes"
  for shape in 128,512,16 512,768,8 1024,1024,4 2048,1024,2 4096,1024,1; do
    IFS=, read -r seq dim batch <<EOF
$shape
EOF
    "$P" explain --backend cuda --batch "$batch" --heads 1 --seq-q "$seq" --head-dim "$dim" \
      --causal bottom-right >>"$LOG" 2>&1
    echo "exit $?" >>"$LOG"
  done
fi

if has bench; then
  for suite in $SUITES; do
    say "polyattn bench --suite $suite --backend cuda --reps $REPS"
    start=$(date +%s)
    timeout -k 60 "${BENCH_TIMEOUT:-400}" "$P" bench --suite "$suite" --backend cuda --reps "$REPS" \
      --algo "${ALGOS:-all}" --max-seconds "${MAX_SECONDS:-10}" \
      --csv "$OUT/$suite.csv" --json "$OUT/$suite.json" >>"$LOG" 2>&1
    echo "exit $? after $(( $(date +%s) - start )) s" | tee -a "$LOG"
  done
fi
say "done"
