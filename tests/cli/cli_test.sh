#!/bin/sh
# CLI contract tests (POSIX sh).
#   cli_test.sh SUITE POLYATTN FIXTURE WORKDIR BENCH_SRC_DIR
# SUITE: usage | bad_input | good_run | outputs | explain_article | numpy | variants | serving |
#        bench | bench_list | bench_compare | bench_backward | compare_torch
# (The bench's validation and crash handling are unit-tested: test_bench_check.c,
# test_bench_crash.c.)
# Exit 0 pass, 1 fail, 77 skipped (numpy suite without numpy, compare_torch without python3).
set -u
suite=$1
polyattn=$2
fixture=$3
work=$4
bench_src=$5

rm -rf "$work"
mkdir -p "$work" || exit 1
cd "$work" || exit 1

failures=0
checks=0
fail() {
    echo "FAIL: $*"
    failures=$((failures + 1))
}

# expect_code CODE DESCRIPTION -- command...: runs it, stdout to out.txt, stderr to err.txt
expect_code() {
    want=$1
    what=$2
    shift 3
    checks=$((checks + 1))
    "$@" >out.txt 2>err.txt
    got=$?
    if [ "$got" -ne "$want" ]; then
        fail "$what: exit $got, expected $want: $*"
        sed 's/^/    stderr: /' err.txt
        return 1
    fi
    return 0
}

# Outputs must not exist after a failed run, nor any temp file beside them.
no_outputs() {
    what=$1
    for f in o.npy l.npy p.npy dq.npy dk.npy dv.npy; do
        [ -e "$f" ] && fail "$what: output $f exists after a failure"
    done
    leftovers=$(ls | grep '\.tmp\.' || true)
    [ -n "$leftovers" ] && fail "$what: temp files left: $leftovers"
    rm -f o.npy l.npy p.npy dq.npy dk.npy dv.npy
    return 0
}

# bad_case WHAT ARG_NAME [TEXT] -- polyattn args...: exit 2, ONE stderr line naming ARG_NAME
# (and containing TEXT when given), no output file.
bad_case() {
    what=$1
    arg=$2
    text=$3
    shift 4
    if expect_code 2 "$what" -- "$polyattn" "$@"; then
        lines=$(wc -l <err.txt)
        [ "$lines" -eq 1 ] || fail "$what: $lines stderr lines, expected 1: $(cat err.txt)"
        grep -q -e "$arg" err.txt || fail "$what: stderr does not name '$arg': $(cat err.txt)"
        if [ -n "$text" ]; then
            grep -q -e "$text" err.txt || fail "$what: stderr lacks '$text': $(cat err.txt)"
        fi
        [ -s out.txt ] && fail "$what: printed on stdout: $(cat out.txt)"
    fi
    no_outputs "$what"
}

gen() { "$fixture" gen "$@" || { echo "fixture gen $* failed"; exit 1; }; }
bad() { "$fixture" bad "$@" || { echo "fixture bad $* failed"; exit 1; }; }

finish() {
    echo "$suite: $checks checks, $failures failures"
    [ "$failures" -eq 0 ] && exit 0
    exit 1
}

case "$suite" in
usage)
    expect_code 0 "--help" -- "$polyattn" --help && grep -q "explain" out.txt ||
        fail "--help lacks the command list"
    expect_code 0 "--version" -- "$polyattn" --version && grep -q "^polyattn [0-9]" out.txt ||
        fail "--version output: $(cat out.txt)"
    for cmd in devices run explain bench; do
        expect_code 0 "$cmd --help" -- "$polyattn" $cmd --help &&
            grep -q "usage: polyattn $cmd" out.txt || fail "$cmd --help: no usage"
    done
    expect_code 2 "no command" -- "$polyattn"
    expect_code 2 "unknown command" -- "$polyattn" frobnicate
    grep -q "frobnicate" err.txt || fail "unknown command not named"
    bad_case "devices unknown option" "--foo" "" -- devices --foo
    expect_code 0 "devices" -- "$polyattn" devices && grep -q "^host: 1 device" out.txt ||
        fail "devices does not list the host device: $(cat out.txt)"
    expect_code 0 "devices --json" -- "$polyattn" devices --json &&
        grep -q '"name": "host", "compiled": true, "device_count": 1' out.txt ||
        fail "devices --json: $(cat out.txt)"
    finish
    ;;

bad_input)
    gen q.npy 1,2,5,8 1
    gen k.npy 1,2,7,8 2
    gen v.npy 1,2,7,8 3
    gen k3.npy 2,7,8 4
    gen kb2.npy 2,2,7,8 5
    gen kd6.npy 1,2,7,6 6
    gen vs6.npy 1,2,6,8 7
    gen vh1.npy 1,1,7,8 8
    gen q3h.npy 1,3,5,8 9
    gen k0.npy 1,2,0,8 10
    gen do.npy 1,2,5,8 11
    for kind in magic text empty version f8 f2 bigendian fortran rank3 truncated trailing header headerlen; do
        bad $kind bad_$kind.npy
    done
    mkdir adir
    good="--q q.npy --k k.npy --v v.npy --out o.npy --lse l.npy --probs p.npy --backend host"

    bad_case "missing --q file" "--q" "missing.npy" -- run --q missing.npy --k k.npy --v v.npy --out o.npy --lse l.npy
    bad_case "--q is a folder" "--q" "not a regular file" -- run --q adir --k k.npy --v v.npy --out o.npy
    bad_case "bad magic" "--k" "not a .npy" -- run --q q.npy --k bad_magic.npy --v v.npy --out o.npy
    bad_case "text file" "--v" "not a .npy" -- run --q q.npy --k k.npy --v bad_text.npy --out o.npy
    bad_case "empty file" "--q" "not a .npy" -- run --q bad_empty.npy --k k.npy --v v.npy --out o.npy
    bad_case "npy version 9" "--q" "version 9" -- run --q bad_version.npy --k k.npy --v v.npy --out o.npy
    bad_case "float64" "--k" "'<f8'" -- run --q q.npy --k bad_f8.npy --v v.npy --out o.npy
    bad_case "float16" "--v" "'<f2'" -- run --q q.npy --k k.npy --v bad_f2.npy --out o.npy
    bad_case "big-endian" "--k" "'>f4'" -- run --q q.npy --k bad_bigendian.npy --v v.npy --out o.npy
    bad_case "fortran order" "--k" "Fortran" -- run --q q.npy --k bad_fortran.npy --v v.npy --out o.npy --lse l.npy --probs p.npy
    bad_case "rank 3 file" "--k" "expected rank 4" -- run --q q.npy --k bad_rank3.npy --v v.npy --out o.npy
    bad_case "rank 3 generated" "--k" "got 3 (k3.npy)" -- run --q q.npy --k k3.npy --v v.npy --out o.npy
    bad_case "truncated" "--v" "truncated" -- run --q q.npy --k k.npy --v bad_truncated.npy --out o.npy
    bad_case "trailing bytes" "--q" "trailing" -- run --q bad_trailing.npy --k k.npy --v v.npy --out o.npy
    bad_case "garbled header" "--q" "malformed" -- run --q bad_header.npy --k k.npy --v v.npy --out o.npy
    bad_case "header past EOF" "--v" "truncated" -- run --q q.npy --k k.npy --v bad_headerlen.npy --out o.npy
    bad_case "empty dimension" "--k" "dimension 2 is 0" -- run --q q.npy --k k0.npy --v v.npy --out o.npy
    bad_case "batch mismatch" "--k" "batch" -- run --q q.npy --k kb2.npy --v v.npy --out o.npy
    bad_case "head_dim mismatch" "--k" "head_dim" -- run --q q.npy --k kd6.npy --v v.npy --out o.npy
    bad_case "seq_kv mismatch" "--v" "seq_kv" -- run --q q.npy --k k.npy --v vs6.npy --out o.npy
    bad_case "heads_kv mismatch" "--v" "heads_kv" -- run --q q.npy --k k.npy --v vh1.npy --out o.npy
    bad_case "heads not divisible" "--k" "divide" -- run --q q3h.npy --k k.npy --v v.npy --out o.npy
    bad_case "unknown option" "--foo" "unknown option" -- run $good --foo 1
    bad_case "unknown dtype" "--dtype" "f64" -- run $good --dtype f64
    bad_case "unknown causal" "--causal" "diagonal" -- run $good --causal diagonal
    bad_case "unknown backend" "--backend" "metal" -- run --q q.npy --k k.npy --v v.npy --out o.npy --backend metal
    bad_case "unknown algo" "--algo" "magic" -- run $good --algo magic
    bad_case "device not a number" "--device" "abc" -- run $good --device abc
    bad_case "device negative" "--device" "" -- run $good --device -1
    bad_case "device out of range" "--device" "out of range" -- run $good --device 7
    bad_case "negative scale" "--scale" "positive" -- run $good --scale -0.5
    bad_case "zero scale" "--scale" "positive" -- run $good --scale 0
    bad_case "scale not a number" "--scale" "1.5x" -- run $good --scale 1.5x
    bad_case "scale nan" "--scale" "" -- run $good --scale nan
    bad_case "warmup negative" "--warmup" "" -- run $good --warmup -1
    bad_case "negative budget" "--memory-budget" "" -- run $good --memory-budget -5
    bad_case "budget not a number" "--memory-budget" "lots" -- run $good --memory-budget lots
    bad_case "missing --out" "--out" "required" -- run --q q.npy --k k.npy --v v.npy
    bad_case "missing --v" "--v" "required" -- run --q q.npy --k k.npy --out o.npy
    bad_case "missing value" "--v" "missing value" -- run --q q.npy --k k.npy --out o.npy --v
    bad_case "option as value" "--q" "missing value" -- run --q --k k.npy --v v.npy --out o.npy
    bad_case "repeated option" "--q" "more than once" -- run $good --q q.npy
    bad_case "flag with value" "--json" "takes no value" -- run $good --json=yes
    bad_case "positional argument" "stray" "unexpected argument" -- run $good stray
    bad_case "--out in a missing folder" "--out" "nowhere/o.npy" -- run --q q.npy --k k.npy --v v.npy --out nowhere/o.npy --lse l.npy
    bad_case "--out is a folder" "--out" "folder" -- run --q q.npy --k k.npy --v v.npy --out adir --lse l.npy
    bad_case "--lse same as --out" "--lse" "same file" -- run --q q.npy --k k.npy --v v.npy --out o.npy --lse o.npy
    bad_case "--probs same as --lse" "--probs" "same file" -- run --q q.npy --k k.npy --v v.npy --out o.npy --lse l.npy --probs l.npy
    bad_case "backward without --dv" "--dv" "go together" -- run $good --grad-out do.npy --dq dq.npy --dk dk.npy
    # explain's own arguments
    bad_case "explain batch 0" "--batch" "" -- explain --batch 0 --heads 1 --seq-q 8 --head-dim 8
    bad_case "explain missing head-dim" "--head-dim" "required" -- explain --batch 1 --heads 1 --seq-q 8
    bad_case "explain seq-q text" "--seq-q" "eight" -- explain --batch 1 --heads 1 --seq-q eight --head-dim 8
    bad_case "explain heads-kv" "--heads-kv" "divide" -- explain --batch 1 --heads 3 --heads-kv 2 --seq-q 8 --head-dim 8
    bad_case "explain dtype" "--dtype" "f8" -- explain --batch 1 --heads 1 --seq-q 8 --head-dim 8 --dtype f8
    bad_case "explain device" "--device" "out of range" -- explain --batch 1 --heads 1 --seq-q 8 --head-dim 8 --backend host --device 3

    # Runtime failures after the output files were staged: exit 1, still no output left.
    # Flash never forms probabilities: bad usage (2), named, before any device work.
    bad_case "flash with probabilities" "--probs" "flash" -- run $good --algo flash
    expect_code 1 "over budget" -- "$polyattn" run $good --memory-budget 0.001
    grep -q "OVER_BUDGET" err.txt || fail "over budget: $(cat err.txt)"
    no_outputs "over budget"
    # The same inputs are fine: the failures above came from the cases, not the files.
    expect_code 0 "control run" -- "$polyattn" run $good
    for f in o.npy l.npy p.npy; do [ -f $f ] || fail "control run: $f missing"; done
    finish
    ;;

good_run)
    # batch 2, heads 3, seq_q 37, seq_kv 53, head_dim 40: odd sizes, no numpy needed.
    gen q.npy 2,3,37,40 11
    gen k.npy 2,3,53,40 12 2
    gen v.npy 2,3,53,24 13 3
    for dtype in f32 f16 bf16; do
        expect_code 0 "run $dtype" -- "$polyattn" run --q q.npy --k k.npy --v v.npy --out o.npy \
            --lse l.npy --probs p.npy --backend host --causal bottom-right --scale 0.3 \
            --dtype $dtype --json || continue
        for key in '"backend": "host"' "\"dtype\": \"$dtype\"" '"algo": "unfused"' '"ms": ' \
            '"workspace_bytes": ' '"o": \[2, 3, 37, 24\]' '"probs": \[2, 3, 37, 53\]' \
            '"lse": \[2, 3, 37\]' '"mask": "causal-bottom-right"'; do
            grep -q "$key" out.txt || fail "run $dtype --json lacks $key: $(cat out.txt)"
        done
        [ "$(wc -l <out.txt)" -eq 1 ] || fail "run $dtype --json: not one line"
        [ -s err.txt ] && fail "run $dtype: stderr not empty: $(cat err.txt)"
        "$fixture" check o.npy 2,3,37,24 >/dev/null || fail "run $dtype: o.npy"
        "$fixture" check l.npy 2,3,37 >/dev/null || fail "run $dtype: l.npy"
        "$fixture" check p.npy 2,3,37,53 >/dev/null || fail "run $dtype: p.npy"
        ls | grep -q '\.tmp\.' && fail "run $dtype: temp files left"
        rm -f o.npy l.npy p.npy
    done
    # Without --json: one summary line; flash; outputs may overwrite existing files.
    echo stale >o.npy
    expect_code 0 "run flash text" -- "$polyattn" run --q q.npy --k k.npy --v v.npy --out o.npy \
        --backend host --algo flash --causal top-left &&
        grep -q "flash f32" out.txt || fail "run flash text: $(cat out.txt)"
    "$fixture" check o.npy 2,3,37,24 >/dev/null || fail "run flash: o.npy"
    # Backward: gradients shaped like Q, K and V (GQA: heads_kv 1), LSE kept internal.
    gen dout.npy 2,3,37,24 14
    gen k1.npy 2,1,53,40 15 2
    gen v1.npy 2,1,53,24 16 3
    expect_code 0 "run backward" -- "$polyattn" run --q q.npy --k k1.npy --v v1.npy --out o.npy \
        --grad-out dout.npy --dq dq.npy --dk dk.npy --dv dv.npy --backend host --algo flash \
        --causal bottom-right --json &&
        grep -q '"dk": \[2, 1, 53, 40\]' out.txt || fail "run backward: $(cat out.txt)"
    "$fixture" check dq.npy 2,3,37,40 >/dev/null || fail "run backward: dq.npy"
    "$fixture" check dk.npy 2,1,53,40 >/dev/null || fail "run backward: dk.npy"
    "$fixture" check dv.npy 2,1,53,24 >/dev/null || fail "run backward: dv.npy"
    finish
    ;;

outputs)
    # Output paths that are not regular files are written through, never replaced by a
    # regular file; an output naming an input (by file identity) is refused.
    gen q.npy 1,2,5,8 1
    gen k.npy 1,2,7,8 2
    gen v.npy 1,2,7,8 3
    gen do.npy 1,2,5,8 4
    cp q.npy q.orig
    io="--q q.npy --k k.npy --v v.npy --backend host"
    through_ok=1
    # A symbolic link to a file: the link stays, its target gets the data.
    : >target.npy
    ln -s target.npy link.npy
    expect_code 0 "symlink" -- "$polyattn" run $io --out link.npy || through_ok=0
    [ -L link.npy ] || { fail "symlink: link.npy was replaced"; through_ok=0; }
    "$fixture" check target.npy 1,2,5,8 >/dev/null || { fail "symlink: target.npy"; through_ok=0; }
    # A link whose target does not exist yet: created through the link.
    ln -s new_target.npy dangling.npy
    expect_code 0 "dangling symlink" -- "$polyattn" run $io --out dangling.npy
    [ -L dangling.npy ] || fail "dangling symlink: replaced"
    "$fixture" check new_target.npy 1,2,5,8 >/dev/null || fail "dangling symlink: no target"
    # A FIFO: read by a reader, still a FIFO afterwards.
    if mkfifo ff 2>/dev/null; then
        timeout 30 cat ff >fifo_got &
        reader=$!
        expect_code 0 "fifo" -- timeout 30 "$polyattn" run $io --out ff || through_ok=0
        wait $reader
        [ -p ff ] || { fail "fifo: ff is no longer a FIFO"; through_ok=0; }
        "$fixture" check fifo_got 1,2,5,8 >/dev/null || { fail "fifo: data"; through_ok=0; }
    else
        echo "note: mkfifo failed here: the FIFO case is skipped"
    fi
    # A folder behind a link, or a socket-like kind: refused, nothing written.
    mkdir adir
    ln -s adir dirlink
    bad_case "symlink to a folder" "--out" "folder" -- run $io --out dirlink
    # /dev/null and /dev/stdout last, and only once write-through is proven above: a tool
    # that replaced output paths would replace them in /dev itself when run as root.
    if [ "$through_ok" = 1 ] && [ -c /dev/null ] && [ -L /dev/stdout ]; then
        # /dev/stdout (a pipe here): the data go through, then the summary line.
        checks=$((checks + 1))
        "$polyattn" run $io --out o.npy --lse /dev/stdout 2>err.txt | cat >piped.txt
        head -c 6 piped.txt | grep -q NUMPY || fail "/dev/stdout: no .npy on the pipe: $(cat err.txt)"
        [ -L /dev/stdout ] || fail "/dev/stdout is no longer a symbolic link"
        rm -f o.npy
        expect_code 0 "/dev/null" -- "$polyattn" run $io --out /dev/null --lse l.npy
        [ -c /dev/null ] || fail "/dev/null is no longer a character device"
        "$fixture" check l.npy 1,2,5 >/dev/null || fail "/dev/null: l.npy"
        rm -f l.npy
        expect_code 0 "bench json /dev/null" -- "$polyattn" bench --suite custom \
            --shape 1,1,1,8,8,8 --backend host --reps 1 --warmup 0 --algo unfused \
            --json /dev/null --csv b.csv
        [ -c /dev/null ] || fail "bench: /dev/null is no longer a character device"
        [ -s b.csv ] || fail "bench /dev/null: b.csv"
    else
        fail "/dev/null and /dev/stdout cases not tried: write-through failed above (or /dev is unusual)"
    fi
    ls | grep -q '\.tmp\.' && fail "outputs: temp files left"
    # Outputs against inputs, by file identity: the same name, a symlink, a hard link.
    bad_case "out is an input" "--out" "input --q" -- run $io --out q.npy
    cmp -s q.npy q.orig || fail "out is an input: q.npy changed"
    ln -s q.npy qlink.npy
    bad_case "out links to an input" "--out" "input --q" -- run $io --out qlink.npy
    if ln q.npy qhard.npy 2>/dev/null; then
        bad_case "out is a hard link to an input" "--out" "input --q" -- run $io --out qhard.npy
    fi
    bad_case "lse is an input" "--lse" "input --k" -- run $io --out o.npy --lse ./k.npy
    bad_case "dv is grad-out" "--dv" "input --grad-out" -- run $io --out o.npy \
        --grad-out do.npy --dq dq.npy --dk dk.npy --dv do.npy
    bad_case "probs is out" "--probs" "same file as --out" -- run $io --out o.npy --probs ./o.npy
    cmp -s q.npy q.orig || fail "identity cases: q.npy changed"
    "$fixture" check do.npy 1,2,5,8 >/dev/null || fail "identity cases: do.npy changed"
    : >b.json
    ln -s b.json b2.json
    bad_case "bench csv is json" "--json" "same file as --csv" -- bench --suite custom \
        --shape 1,1,1,8,8,8 --csv b2.json --json b.json
    # --scale beyond float range names --scale; --probs with flash is bad usage.
    bad_case "scale out of range" "--scale" "out of float range" -- run $io --out o.npy --scale 1e300
    bad_case "explain scale out of range" "--scale" "out of float range" -- explain --batch 1 \
        --heads 1 --seq-q 8 --head-dim 8 --scale 1e39 --backend host
    bad_case "flash probs" "--probs" "flash" -- run $io --out o.npy --probs p.npy --algo flash
    bad_case "explain flash probs" "--probs" "flash" -- explain --batch 1 --heads 1 --seq-q 8 \
        --head-dim 8 --probs --algo flash --backend host
    # A tiny memory budget: the sizes in bytes, not "0.0 MiB".
    expect_code 1 "tiny budget" -- "$polyattn" run $io --out o.npy --memory-budget 0.0001
    grep -q "needs [0-9]* B (workspace [0-9]* B) but the memory budget is 104 B" err.txt ||
        fail "tiny budget: message: $(cat err.txt)"
    no_outputs "tiny budget"
    finish
    ;;

explain_article)
    # The article's shapes (seq, head_dim, batch), one head, causal, on the host backend.
    for shape in 128,512,16 512,768,8 1024,1024,4 2048,1024,2 4096,1024,1; do
        seq=${shape%%,*}
        rest=${shape#*,}
        dim=${rest%%,*}
        batch=${rest#*,}
        what="explain seq $seq head_dim $dim batch $batch"
        expect_code 0 "$what" -- "$polyattn" explain --batch $batch --heads 1 --seq-q $seq \
            --head-dim $dim --causal bottom-right --backend host || continue
        grep -q "^chosen: \(unfused\|fused\|flash\)$" out.txt || fail "$what: no chosen line"
        grep -q "^reason: ." out.txt || fail "$what: no reason"
        grep -q "^flops: [0-9]" out.txt || fail "$what: no flops"
        grep -q "^min bytes moved: [0-9]" out.txt || fail "$what: no bytes moved"
        grep -q "^kernel launches: [0-9]" out.txt || fail "$what: no kernel launches"
        grep -q "^device memory estimate: [1-9]" out.txt || fail "$what: no memory estimate"
        for algo in unfused fused flash; do
            line=$(grep "^  $algo " out.txt)
            [ -n "$line" ] || { fail "$what: no $algo candidate"; continue; }
            echo "$line" | grep -q "device memory [0-9]" || fail "$what: $algo: no memory: $line"
            case "$line" in
            *rejected*)
                # a rejected candidate says why: text after the memory estimate
                echo "$line" | grep -q "device memory [0-9.]* [KMGT]*i*B  *[a-z]" ||
                    fail "$what: $algo rejected without a reason: $line" ;;
            *chosen*|*eligible*) ;;
            *) fail "$what: $algo: no status: $line" ;;
            esac
        done
        # JSON carries the same three candidates.
        expect_code 0 "$what --json" -- "$polyattn" explain --batch $batch --heads 1 \
            --seq-q $seq --head-dim $dim --causal bottom-right --backend host --json &&
            [ "$(grep -o '"algo": ' out.txt | wc -l)" -eq 3 ] ||
            fail "$what --json: $(cat out.txt)"
        # A budget below the inputs: nothing fits; every rejection is printed, exit 1.
        expect_code 1 "$what, 1 MiB budget" -- "$polyattn" explain --batch $batch --heads 1 \
            --seq-q $seq --head-dim $dim --causal bottom-right --backend host \
            --memory-budget 1 || continue
        grep -q "^chosen: none" out.txt || fail "$what, 1 MiB: no 'chosen: none'"
        for algo in unfused fused flash; do
            grep -q "$algo: ." out.txt || fail "$what, 1 MiB: $algo's rejection missing: $(cat out.txt)"
        done
        [ "$(wc -l <err.txt)" -eq 1 ] || fail "$what, 1 MiB: stderr: $(cat err.txt)"
    done
    finish
    ;;

numpy)
    py=""
    for candidate in "${PYTHON:-}" python3 /usr/bin/python3; do
        [ -n "$candidate" ] || continue
        if "$candidate" -c "import numpy" >/dev/null 2>&1; then
            py=$candidate
            break
        fi
    done
    if [ -z "$py" ]; then
        echo "SKIP: no python3 with numpy"
        exit 77
    fi
    # name  shape(b,hq,hkv,sq,skv,d[,dv])  causal  scale  extra-run-args  rtol
    # Host backend in f32: O is stored in float32, so its error relative to max |O| is a
    # few 1e-8; 1e-6 leaves room for summation order and nothing more.
    while read -r name shape causal scale extra rtol; do
        [ -n "$name" ] || continue
        dir=$name
        "$py" "$bench_src/make_inputs.py" --shape "$shape" --dir "$dir" --seed 7 >/dev/null ||
            { fail "$name: make_inputs.py"; continue; }
        args="--q $dir/q.npy --k $dir/k.npy --v $dir/v.npy --out $dir/o.npy --lse $dir/l.npy"
        cargs=""
        [ "$causal" != none ] && cargs="--causal $causal"
        [ "$scale" != default ] && cargs="$cargs --scale $scale"
        [ "$extra" != - ] || extra=""
        probs="--probs $dir/p.npy"
        case "$extra" in *flash*) probs="" ;; esac
        expect_code 0 "$name run" -- "$polyattn" run $args $probs $cargs --backend host \
            $(echo "$extra" | tr ':' ' ') || continue
        checks=$((checks + 1))
        if ! "$py" "$bench_src/check_run.py" $args $probs $cargs --rtol "$rtol" >check.txt 2>&1; then
            fail "$name: check_run.py"
        fi
        sed "s/^/    $name: /" check.txt
    done <<EOF
paper 2,3,3,37,53,40 bottom-right 0.3 - 1e-6
gqa 2,6,2,29,31,24,40 none default - 1e-6
gqa_flash 1,8,2,45,33,64 top-left 0.125 --algo:flash 1e-6
topleft_long_q 1,2,1,50,20,32 top-left default - 1e-6
masked_rows 2,2,1,50,20,32 bottom-right default - 1e-6
masked_rows_flash 1,4,2,41,17,48 bottom-right default --algo:flash 1e-6
paper_f16 2,3,3,37,53,40 bottom-right 0.3 --dtype:f16 2e-3
paper_bf16 2,3,3,37,53,40 bottom-right 0.3 --dtype:bf16 2e-2
EOF
    # The check must be able to fail: a wrong scale is caught.
    checks=$((checks + 1))
    if "$py" "$bench_src/check_run.py" --q paper/q.npy --k paper/k.npy --v paper/v.npy \
        --out paper/o.npy --causal bottom-right --scale 0.31 >/dev/null 2>&1; then
        fail "check_run.py accepted outputs made with another scale"
    fi
    finish
    ;;

serving)
    # Serving layouts: tests/cli/serving_test.py (needs numpy for its inputs and reference).
    for candidate in "${PYTHON:-}" python3 /usr/bin/python3; do
        [ -n "$candidate" ] || continue
        if "$candidate" -c "import numpy" >/dev/null 2>&1; then
            exec "$candidate" "$bench_src/../tests/cli/serving_test.py" "$polyattn" "$work"
        fi
    done
    echo "SKIP: no python3 with numpy"
    exit 77
    ;;
e4m3)
    # FP8 inputs: tests/cli/e4m3_test.py (needs numpy for its inputs and reference).
    for candidate in "${PYTHON:-}" python3 /usr/bin/python3; do
        [ -n "$candidate" ] || continue
        if "$candidate" -c "import numpy" >/dev/null 2>&1; then
            exec "$candidate" "$bench_src/../tests/cli/e4m3_test.py" "$polyattn" "$work"
        fi
    done
    echo "SKIP: no python3 with numpy"
    exit 77
    ;;
variants)
    # Score variants: tests/cli/variants_test.py (needs numpy for its inputs and reference).
    for candidate in "${PYTHON:-}" python3 /usr/bin/python3; do
        [ -n "$candidate" ] || continue
        if "$candidate" -c "import numpy" >/dev/null 2>&1; then
            exec "$candidate" "$bench_src/../tests/cli/variants_test.py" "$polyattn" "$work" \
                "$bench_src/.."
        fi
    done
    echo "SKIP: no python3 with numpy"
    exit 77
    ;;

bench)
    shapes="2,4,2,37,53,40;1,2,2,100,60,64,32;1,3,1,1,77,16"
    expect_code 0 "bench custom" -- "$polyattn" bench --suite custom --shape "$shapes" \
        --causal bottom-right --backend host --reps 3 --warmup 1 --dtype f32,bf16 \
        --csv b.csv --json b.json
    cat out.txt
    # 3 shapes x 2 dtypes x 3 algorithms, each measured or skipped with a reason.
    [ "$(grep -c ' ok  ' out.txt)" -ge 12 ] || fail "bench: fewer than 12 measurements ok"
    grep -q "18 measured\|[0-9]* measured, [0-9]* skipped, 0 failed" out.txt || fail "bench: summary"
    grep -q "unfused  ok .* 1.00x" out.txt || fail "bench: no unfused baseline"
    [ "$(wc -l <b.csv)" -eq 19 ] || fail "bench: b.csv has $(wc -l <b.csv) lines, expected 19"
    grep -q '^custom,host,"[^"]*",2,4,2,37,53,40,40,causal-bottom-right,f32,flash,flash,ok,' b.csv ||
        fail "bench: b.csv lacks the flash row"
    [ "$(grep -o '"status": ' b.json | wc -l)" -eq 18 ] || fail "bench: b.json results"
    grep -q '"rows_checked": [1-9]' b.json || fail "bench: nothing validated"
    # SIGTERM: the measurement under way finishes, the reports hold what was measured.
    heavy="1,4,4,700,700,64"
    heavy="$heavy;$heavy;$heavy;$heavy;$heavy;$heavy;$heavy;$heavy"
    rm -f out.txt err.txt # the wait below must see this run's rows, not the last run's
    "$polyattn" bench --suite custom --shape "$heavy" --backend host --reps 3 --warmup 1 \
        --algo unfused,flash --csv t.csv >out.txt 2>err.txt &
    pid=$!
    # Signal once the first measurement is reported (at most 300 s).
    waited=0
    while ! grep -q " ok " out.txt 2>/dev/null && [ $waited -lt 1500 ]; do
        sleep 0.2
        waited=$((waited + 1))
    done
    kill -TERM $pid
    wait $pid
    code=$?
    checks=$((checks + 1))
    [ "$code" -eq 1 ] || fail "bench SIGTERM: exit $code, expected 1"
    grep -q "interrupted after" err.txt || fail "bench SIGTERM: stderr: $(cat err.txt)"
    rows=$(($(wc -l <t.csv) - 1))
    [ "$rows" -ge 1 ] && [ "$rows" -lt 16 ] || fail "bench SIGTERM: t.csv has $rows rows"
    ls | grep -q '\.tmp\.' && fail "bench SIGTERM: temp files left"
    bad_case "bench suite" "--suite" "mlperf" -- bench --suite mlperf
    bad_case "bench reps" "--reps" "" -- bench --suite custom --shape 1,1,1,8,8,8 --reps 0
    bad_case "bench algo" "--algo" "fast" -- bench --suite custom --shape 1,1,1,8,8,8 --algo flash,fast
    bad_case "bench dtype" "--dtype" "f64" -- bench --suite custom --shape 1,1,1,8,8,8 --dtype f64
    bad_case "bench shape syntax" "--shape" "" -- bench --suite custom --shape 1,1,1,8
    bad_case "bench shape heads" "--shape" "" -- bench --suite custom --shape 1,3,2,8,8,8
    bad_case "bench shape without custom" "--shape" "custom" -- bench --suite article --shape 1,1,1,8,8,8
    bad_case "bench missing shape" "--shape" "required" -- bench --suite custom
    bad_case "bench max-seconds" "--max-seconds" "" -- bench --suite custom --shape 1,1,1,8,8,8 --max-seconds -1
    # --rotate N: exactly N input sets; --graph N: CUDA graph replay (CUDA targets only).
    expect_code 0 "bench rotate" -- "$polyattn" bench --suite custom --shape 1,2,1,9,11,8 \
        --backend host --reps 3 --warmup 1 --algo flash --rotate 3 --json r.json
    grep -q '"status": "ok"' r.json || fail "bench rotate: $(cat out.txt)"
    grep -q '"timing": "events", "rotate": 3, ' r.json || fail "bench rotate: JSON timing/rotate"
    bad_case "bench rotate range" "--rotate" "" -- bench --suite custom --shape 1,1,1,8,8,8 --rotate 17
    bad_case "bench rotate zero" "--rotate" "" -- bench --suite custom --shape 1,1,1,8,8,8 --rotate 0
    bad_case "bench graph range" "--graph" "" -- bench --suite custom --shape 1,1,1,8,8,8 --graph 0
    bad_case "bench graph host" "--graph" "cuda" -- bench --suite custom --shape 1,1,1,8,8,8 --backend host --graph 4
    bad_case "bench graph compare" "--graph" "compare-backends" -- bench --suite custom --shape 1,1,1,8,8,8 --compare-backends --graph 4
    if "$polyattn" devices --json | grep -q '"name": "cuda", "compiled": true'; then
        echo "note: CUDA is compiled in: the no-CUDA --graph message is not checked"
    else
        expect_code 1 "bench graph without CUDA" -- "$polyattn" bench --suite custom \
            --shape 1,1,1,8,8,8 --backend cuda --graph 4 --json g.json
        grep -q -- "--graph: .*built without the CUDA backend" err.txt ||
            fail "bench graph without CUDA: $(cat err.txt)"
        [ -e g.json ] && fail "bench graph without CUDA: g.json written"
    fi
    bad_case "bench csv folder" "--csv" "nowhere" -- bench --suite custom --shape 1,1,1,8,8,8 --csv nowhere/b.csv --json j.json
    [ -e j.json ] && fail "bench csv folder: j.json written"
    finish
    ;;

bench_serving)
    # --suite decode and serving at --quick sizes: host (and OpenCL where present: its rows
    # of a serving layout are skipped until its kernels take them), reports, bad options.
    backends=host
    "$polyattn" devices 2>/dev/null | grep -q '^opencl:' && backends=host,opencl
    for name in decode serving; do
        expect_code 0 "bench $name --quick" -- "$polyattn" bench --suite $name --quick \
            --backend $backends --algo auto,flash --reps 2 --warmup 1 --csv $name.csv \
            --json $name.json || continue
        grep -q 'failed' out.txt && ! grep -q ' 0 failed' out.txt && fail "bench $name: failures"
        for layout in cache paged/16 paged/256; do
            [ $name = serving ] && [ $layout = paged/16 ] && continue
            grep "^2 .*host\|^2 " out.txt | grep ' ok ' | grep -q " $layout splits [0-9]" ||
                fail "bench $name: no measured $layout row with its split count"
        done
        head -n 1 $name.csv | grep -q ',layout,block_size,num_splits$' ||
            fail "bench $name csv header: $(head -n 1 $name.csv)"
        grep -q ',forward,paged,256,[0-9]' $name.csv || fail "bench $name csv: no paged/256 row"
        grep -q '"layout": "paged", "block_size": 16' $name.json ||
            fail "bench $name json: no paged/16 result"
    done
    expect_code 0 "bench serving varlen" -- "$polyattn" bench --suite serving --quick \
        --backend host --algo flash --reps 2 --warmup 0
    grep ' ok ' out.txt | grep -q ' varlen splits 1' || fail "bench serving: no varlen row: $(cat out.txt)"
    [ "$(grep -c ' ok ' out.txt)" -eq 6 ] || fail "bench serving: expected 6 measured rows: $(cat out.txt)"
    bad_case "bench quick" "--quick" "decode or serving" -- bench --suite article --quick
    bad_case "bench decode variants" "--softcap" "not with --suite decode" -- bench --suite decode \
        --quick --softcap 30
    expect_code 0 "bench decode backward" -- "$polyattn" bench --suite decode --quick \
        --backend host --algo flash --backward --reps 2 --warmup 0
    grep -q 'skipped .*the serving rows time the forward only' out.txt ||
        fail "bench decode --backward: serving rows not skipped: $(cat out.txt)"
    ;;
bench_list)
    # --list: the suite's shapes as CSV, one row per shape and dtype, no device work.
    for pair in article:5 fa2:24 decode:24 serving:6; do
        name=${pair%%:*}
        nrows=${pair#*:}
        expect_code 0 "bench list $name" -- "$polyattn" bench --suite $name --list || continue
        head -n 1 out.txt | grep -qx 'suite,batch,heads_q,heads_kv,seq_q,seq_kv,head_dim,head_dim_v,mask,dtype,layout,block_size' ||
            fail "bench list $name: header: $(head -n 1 out.txt)"
        rows=$(($(wc -l <out.txt) - 1))
        [ "$rows" -eq "$nrows" ] || fail "bench list $name: $rows rows, expected $nrows"
        [ -s err.txt ] && fail "bench list $name: stderr: $(cat err.txt)"
    done
    expect_code 0 "bench list decode" -- "$polyattn" bench --suite decode --list
    grep -q '^decode,8,32,8,16,131072,128,128,causal-bottom-right,bf16,paged,256$' out.txt ||
        fail "bench list decode: no seq_q 16 x 128k paged/256 row"
    grep -q '^decode,8,32,8,1,8192,128,128,causal-bottom-right,bf16,cache,0$' out.txt ||
        fail "bench list decode: no seq_q 1 x 8k cache row"
    grep -q '^decode,8,32,8,1,32768,128,128,causal-bottom-right,bf16,paged,16$' out.txt ||
        fail "bench list decode: no seq_q 1 x 32k paged/16 row"
    expect_code 0 "bench list article" -- "$polyattn" bench --suite article --list --dtype f32,bf16
    [ "$(grep -c ',bf16,dense,0$' out.txt)" -eq 5 ] || fail "bench list --dtype: $(cat out.txt)"
    grep -q '^article,1,1,1,4096,4096,1024,1024,causal-bottom-right,f32,dense,0$' out.txt ||
        fail "bench list article: last shape"
    expect_code 0 "bench list custom" -- "$polyattn" bench --suite custom --list \
        --shape "2,4,2,37,53,40;1,2,2,100,60,64,32" --causal top-left
    grep -q '^custom,2,4,2,37,53,40,40,causal-top-left,f32,dense,0$' out.txt || fail "bench list custom: $(cat out.txt)"
    grep -q '^custom,1,2,2,100,60,64,32,causal-top-left,f32,dense,0$' out.txt || fail "bench list custom DV"
    bad_case "bench list custom without shape" "--shape" "required" -- bench --suite custom --list
    finish
    ;;

bench_compare)
    # --compare-backends on this machine: the host reference (asked for) and whatever else
    # is there (PoCL in CI).
    shapes="2,4,2,37,53,40;1,3,1,5,77,16"
    expect_code 0 "compare" -- "$polyattn" bench --compare-backends --include-host --suite custom \
        --shape "$shapes" --causal bottom-right --reps 3 --warmup 1 --dtype f32 \
        --csv c.csv --json c.json
    cat out.txt
    targets=$(sed -n 's/^polyattn bench: compare-backends: \([a-z]*:[0-9].*\)$/\1/p' out.txt)
    n_targets=$(echo "$targets" | wc -w)
    echo "targets: $targets"
    echo "$targets" | grep -q 'host:0' || fail "compare: host:0 not among the targets"
    grep -q '^Backend comparison' out.txt || fail "compare: no comparison table"
    grep -q '^geomean ratio, best rows' out.txt || fail "compare: no geometric means"
    # One comparison row per shape x algo, one cell per target, the fastest at 1.00x.
    rows=$(sed -n '/^Backend comparison/,/^best algorithm/p' out.txt | grep -c ' br   f32   ')
    [ "$rows" -eq 6 ] || fail "compare: $rows algorithm rows, expected 6"
    sed -n '/^Backend comparison/,$p' out.txt | grep ' br   f32   unfused' | grep -q '(1.00x)' ||
        fail "compare: no 1.00x in the unfused row"
    [ "$(grep -c '^2     4    2    37     53     40    br   f32   best' out.txt)" -eq 1 ] ||
        fail "compare: best row"
    [ "$(($(wc -l <c.csv) - 1))" -eq $((6 * n_targets)) ] || fail "compare: c.csv rows: $(wc -l <c.csv)"
    head -n 1 c.csv | grep -q ',reason,device_index,pass,layout,block_size,num_splits$' || fail "compare: c.csv header"
    grep -q '^custom,host,' c.csv || fail "compare: no host rows in c.csv"
    [ "$(grep -o '"label": ' c.json | wc -l)" -eq "$n_targets" ] || fail "compare: c.json targets"
    [ "$(grep -o '"device_index": 0, "batch"' c.json | wc -l)" -ge 6 ] || fail "compare: c.json rows name their device"
    if [ "$n_targets" -ge 2 ]; then
        other=$(echo "$targets" | tr ' ' '\n' | grep -v '^host' | head -n 1)
        [ "$(grep -c "^custom,${other%%:*}," c.csv)" -ge 6 ] || fail "compare: no $other rows"
    else
        echo "note: only the host reference here; the comparison has one column"
    fi
    # A list without --compare-backends: each item one device, ratios to --baseline.
    expect_code 0 "list + baseline" -- "$polyattn" bench --backend host,host:0 --suite custom \
        --shape 1,2,1,9,11,8 --reps 3 --warmup 1 --algo flash,unfused --baseline host:0
    grep -q 'host:0 .*\[baseline\]' out.txt || fail "baseline: not named: $(cat out.txt)"
    [ "$(grep -c '^polyattn bench: suite custom, host:0' out.txt)" -eq 2 ] || fail "list: two runs"
    grep ' none f32   flash ' out.txt | tail -n 1 | grep -q '(1.00x) *[0-9.e-]* (' ||
        fail "baseline: ratio cells: $(grep ' none f32   flash ' out.txt | tail -n 1)"
    bad_case "compare include-host" "--include-host" "" -- bench --suite custom --shape 1,1,1,8,8,8 --include-host
    bad_case "compare device" "--device" "" -- bench --suite custom --shape 1,1,1,8,8,8 --compare-backends --device 0
    bad_case "compare backend item" "--backend" "cuda:x" -- bench --suite custom --shape 1,1,1,8,8,8 --backend host,cuda:x
    bad_case "compare backend empty" "--backend" "" -- bench --suite custom --shape 1,1,1,8,8,8 --backend host,
    bad_case "compare baseline" "--baseline" "" -- bench --suite custom --shape 1,1,1,8,8,8 --backend host --baseline opencl
    bad_case "compare baseline auto" "--baseline" "" -- bench --suite custom --shape 1,1,1,8,8,8 --backend host --baseline auto
    bad_case "compare baseline word" "--baseline" "metal" -- bench --suite custom --shape 1,1,1,8,8,8 --backend host --baseline metal
    bad_case "compare baseline list" "--baseline" "" -- bench --suite custom --shape 1,1,1,8,8,8 --backend host --baseline host,host
    finish
    ;;

bench_backward)
    # --backward: every algorithm planned with want_backward, the gradients validated on
    # sampled rows against a double host computation, then the backward timed alone.
    shapes="2,4,2,37,53,40;1,3,1,1,77,16"
    expect_code 0 "backward host" -- "$polyattn" bench --suite custom --shape "$shapes" \
        --causal bottom-right --backend host --reps 3 --warmup 1 --dtype f32,bf16 --backward \
        --csv bb.csv --json bb.json
    cat out.txt
    grep -q '^polyattn bench: suite custom, host:0 .*backward pass (dQ, dK, dV)' out.txt ||
        fail "backward host: no backward title"
    # 2 shapes x 2 dtypes: unfused and flash measured, fused has no backward on host.
    [ "$(grep -c ' \(unfused\|flash\) *ok .* (dQ [0-9.e+-]* dK [0-9.e+-]* dV [0-9.e+-]*) ws ' out.txt)" -eq 8 ] ||
        fail "backward host: expected 8 ok rows with per-gradient errors"
    [ "$(grep -c ' fused *skipped .*UNSUPPORTED' out.txt)" -eq 4 ] ||
        fail "backward host: fused rows should be skipped with the backend's reason"
    grep -q '^8 measured, 4 skipped, 0 failed' out.txt || fail "backward host: summary"
    [ "$(wc -l <bb.csv)" -eq 13 ] || fail "backward host: bb.csv has $(wc -l <bb.csv) lines, expected 13"
    head -n 1 bb.csv | grep -q ',reason,device_index,pass,layout,block_size,num_splits$' || fail "backward host: CSV header"
    [ "$(grep -c ',backward,dense,0,[0-9]*$' bb.csv)" -eq 12 ] || fail "backward host: CSV pass column"
    grep -q '^custom,host,"[^"]*",2,4,2,37,53,40,40,causal-bottom-right,bf16,flash,flash,ok,' bb.csv ||
        fail "backward host: CSV lacks the bf16 flash row"
    grep -q '"pass": "backward", "flops_convention": "2.5 x 4\*batch' bb.json ||
        fail "backward host: JSON top-level pass/flops"
    [ "$(grep -o '"pass": "backward", "deterministic": false, "max_err_dq": [0-9]' bb.json | wc -l)" -eq 8 ] ||
        fail "backward host: JSON rows lack pass/deterministic/max_err_dq"
    # The forward's reports say forward.
    expect_code 0 "forward pass column" -- "$polyattn" bench --suite custom --shape 1,2,1,9,11,8 \
        --backend host --reps 1 --warmup 0 --algo flash --csv f.csv --json f.json
    tail -n 1 f.csv | grep -q ',forward,dense,0,[0-9]*$' || fail "forward: CSV pass: $(tail -n 1 f.csv)"
    grep -q '"pass": "forward"' f.json || fail "forward: JSON pass"
    grep -q 'max_err_dq' f.json && fail "forward: JSON has gradient errors"
    # OpenCL (PoCL in CI) when there is a device: deterministic gradients, f32 and f16.
    "$polyattn" devices >devices.txt 2>&1
    if grep -q '^opencl: [1-9]' devices.txt; then
        expect_code 0 "backward opencl" -- "$polyattn" bench --suite custom \
            --shape "2,4,2,37,53,40;3,2,1,50,20,32;1,3,1,1,77,16" --causal top-left \
            --backend opencl --reps 3 --warmup 1 --dtype f32,f16 --backward --deterministic \
            --json bo.json
        cat out.txt
        grep -q 'backward pass (dQ, dK, dV; deterministic)' out.txt || fail "backward opencl: title"
        [ "$(grep -c ' \(unfused\|flash\) *ok .* (dQ ' out.txt)" -eq 12 ] ||
            fail "backward opencl: expected unfused and flash ok on 3 shapes x 2 dtypes"
        grep -q ' 0 failed' out.txt || fail "backward opencl: failures"
        [ "$(grep -o '"deterministic": true' bo.json | wc -l)" -eq 18 ] ||
            fail "backward opencl: JSON deterministic"
    else
        echo "note: no OpenCL device here: the OpenCL backward part is skipped"
    fi
    # --list is the same with --backward (the shapes do not depend on the pass).
    "$polyattn" bench --suite fa2 --list >l1.txt 2>&1
    expect_code 0 "backward list" -- "$polyattn" bench --suite fa2 --list --backward
    cmp -s out.txt l1.txt || fail "backward list differs"
    bad_case "deterministic without backward" "--deterministic" "only with --backward" -- \
        bench --suite custom --shape 1,1,1,8,8,8 --deterministic
    bad_case "backward with a value" "--backward" "takes no value" -- \
        bench --suite custom --shape 1,1,1,8,8,8 --backward=yes --json j.json
    [ -e j.json ] && fail "backward with a value: j.json written"
    bad_case "backward bad algo" "--algo" "fast" -- bench --suite custom --shape 1,1,1,8,8,8 \
        --backward --algo fast
    ls | grep -q '\.tmp\.' && fail "backward: temp files left"
    finish
    ;;

compare_torch)
    # bench/compare_torch.py: without PyTorch it says so and exits 77; --no-torch runs the
    # polyattn side alone; bad usage exits 2.
    command -v python3 >/dev/null 2>&1 || { echo "no python3: skipped"; exit 77; }
    script="$bench_src/compare_torch.py"
    bad_py() {
        what=$1
        shift
        expect_code 2 "$what" -- python3 "$script" "$@"
        [ -s err.txt ] || fail "$what: nothing on stderr"
    }
    bad_py "torch suite custom without shape" --suite custom --polyattn "$polyattn" --no-torch
    bad_py "torch backends" --suite article --polyattn "$polyattn" --backends cuda,metal
    bad_py "torch torch-backends" --suite article --polyattn "$polyattn" --torch-backends flash,xla
    bad_py "torch polyattn missing" --suite article --polyattn ./no-such-polyattn --no-torch
    bad_py "torch bad shape" --suite custom --shape 1,1,1,8 --polyattn "$polyattn" --no-torch --backends host
    bad_py "torch deterministic without backward" --suite article --polyattn "$polyattn" --no-torch --deterministic
    bad_py "torch shape-lines with suite" --shape-lines - --suite fa2
    bad_py "torch shape-lines with no-torch" --shape-lines - --no-torch
    bad_py "torch jsonl with no-torch" --suite article --polyattn "$polyattn" --no-torch --jsonl x.jsonl
    checks=$((checks + 1))
    echo "fa2 bf16 1 2 2 8 8" | python3 "$script" --shape-lines - --jsonl - >out.txt 2>err.txt
    [ $? -eq 2 ] && grep -q "line 1" err.txt || fail "torch bad shape line: $(cat err.txt)"
    if python3 -c "import torch" >/dev/null 2>&1; then
        echo "note: PyTorch is installed here: the missing-torch check is skipped"
    else
        expect_code 77 "torch missing" -- python3 "$script" --suite custom --shape 1,1,1,8,8,8 \
            --polyattn "$polyattn" --backends host
        grep -q "PyTorch is not installed" err.txt || fail "torch missing: message: $(cat err.txt)"
        [ -s out.txt ] && fail "torch missing: ran something: $(cat out.txt)"
        # The shape-line interface: torch alone on given shapes.
        printf 'fa2 f16 4 16 16 1024 1024 64 0\nfa2 f16 2 16 16 2048 2048 64 1\n' >lines.txt
        expect_code 77 "torch missing, shape lines" -- sh -c \
            'python3 "$1" --shape-lines - --jsonl - --torch-backends flash <lines.txt' sh "$script"
        grep -q "PyTorch is not installed" err.txt || fail "shape lines: message: $(cat err.txt)"
        expect_code 77 "torch missing, shape lines from a file" -- python3 "$script" \
            --shape-lines lines.txt --jsonl x.jsonl --backward
    fi
    expect_code 0 "torch --no-torch" -- python3 "$script" --suite custom \
        --shape "1,4,2,9,40,16;1,2,2,1,33,8" --causal bottom-right --polyattn "$polyattn" \
        --backends host --no-torch --reps 3 --warmup 1 --algo unfused,flash --out ct
    grep -q '^ms per call' out.txt || fail "torch --no-torch: no table: $(cat out.txt)"
    grep -q '^1     4    2    9      40     16    br   f32  .*/[uf][nl]$' out.txt ||
        fail "torch --no-torch: shape row: $(grep '^1 ' out.txt)"
    [ "$(($(wc -l <ct/compare_torch_custom.csv) - 1))" -eq 4 ] || fail "torch --no-torch: csv rows"
    grep -q '^custom,polyattn,host:0,' ct/compare_torch_custom.csv || fail "torch --no-torch: csv"
    [ -s ct/compare_torch_custom.json ] && [ -s ct/polyattn_custom.json ] && [ -s ct/polyattn_custom.csv ] &&
        [ -s ct/compare_torch_custom.txt ] || fail "torch --no-torch: files: $(ls ct)"
    # --backward: polyattn bench --backward underneath, rows marked backward.
    expect_code 0 "torch --no-torch --backward" -- python3 "$script" --suite custom \
        --shape "1,4,2,9,40,16;1,2,2,1,33,8" --causal bottom-right --polyattn "$polyattn" \
        --backends host --no-torch --reps 3 --warmup 1 --algo unfused,flash --backward \
        --deterministic --out ctb
    grep -q '^compare_torch: suite custom, backward pass, polyattn host:0' out.txt ||
        fail "torch --backward: header: $(cat out.txt)"
    grep -q -- '--backward --deterministic' ctb/polyattn_custom.txt || fail "torch --backward: polyattn command"
    [ "$(grep -c '^custom,polyattn,host:0,.*,backward,[0-9.e-]*,[0-9.e-]*,[0-9.e-]*' ctb/compare_torch_custom.csv)" -eq 4 ] ||
        fail "torch --backward: csv rows: $(cat ctb/compare_torch_custom.csv)"
    # SIGTERM: polyattn finishes its measurement, the reports hold what was measured.
    heavy="1,4,4,700,700,64"
    heavy="$heavy;$heavy;$heavy;$heavy;$heavy;$heavy;$heavy;$heavy"
    # Unbuffered, and a generous wait: under ASan on 2 busy cores the first measurement
    # can take long, and a signal before it would test nothing.  The previous run's
    # out.txt goes first: the background job truncates it only once it has started, and
    # the wait below must not see the old rows.
    rm -f out.txt err.txt
    PYTHONUNBUFFERED=1 python3 "$script" --suite custom --shape "$heavy" --polyattn "$polyattn" \
        --backends host --no-torch --reps 3 --warmup 1 --algo unfused,flash --out cs \
        >out.txt 2>err.txt &
    pid=$!
    waited=0
    while ! grep -q " ok " out.txt 2>/dev/null && [ $waited -lt 1500 ]; do
        sleep 0.2
        waited=$((waited + 1))
    done
    kill -TERM $pid
    wait $pid
    code=$?
    checks=$((checks + 1))
    [ "$code" -eq 1 ] || fail "torch SIGTERM: exit $code, expected 1: $(cat err.txt)"
    rows=$(($(wc -l <cs/compare_torch_custom.csv) - 1))
    [ "$rows" -ge 1 ] && [ "$rows" -lt 16 ] || fail "torch SIGTERM: $rows rows"
    grep -q "interrupted after" err.txt || fail "torch SIGTERM: polyattn not interrupted: $(cat err.txt)"
    finish
    ;;

*)
    echo "unknown suite $suite"
    exit 2
    ;;
esac
