#!/bin/sh
# Lists the AMD GPU code objects inside the hip backend module and checks that every
# requested target holds every required kernel.  Needs no GPU: it reads the module's
# offload bundles with roc-obj-ls / roc-obj-extract (Debian package hipcc) and the kernel
# descriptors (<kernel>.kd symbols) with readelf (binutils) or llvm-readelf.
#
# usage: code_objects.sh MODULE "gfx908;gfx90a" "kernel_a;kernel_b" ["mfma_kernel:gfx908,gfx90a"...]
#   targets and kernels are ';'-separated; a kernel matches when its demangled name contains
#   the word.  Optional TARGET-ONLY rules: kernel present on exactly the listed targets.
set -u
module=$1
targets=$(printf '%s' "$2" | tr ';' ' ')
kernels=$(printf '%s' "$3" | tr ';' ' ')
shift 3

fail() { echo "FAIL: $*"; exit 1; }
command -v roc-obj-ls >/dev/null 2>&1 || fail "roc-obj-ls not found (Debian: apt install hipcc)"
command -v roc-obj-extract >/dev/null 2>&1 || fail "roc-obj-extract not found (hipcc)"
readelf=""
for tool in readelf llvm-readelf llvm-readelf-15 llvm-readelf-14; do
    if command -v "$tool" >/dev/null 2>&1; then readelf=$tool; break; fi
done
[ -n "$readelf" ] || fail "no readelf (binutils) or llvm-readelf found"
notes="" # llvm-readelf decodes the AMDGPU metadata note (optional)
for tool in llvm-readelf llvm-readelf-15 llvm-readelf-14; do
    if command -v "$tool" >/dev/null 2>&1; then notes=$tool; break; fi
done
demangle=cat
command -v c++filt >/dev/null 2>&1 && demangle=c++filt
[ -f "$module" ] || fail "module $module does not exist"

work=$(mktemp -d "${TMPDIR:-/tmp}/polyattn_co.XXXXXX") || fail "mktemp"
trap 'rm -rf "$work"' EXIT INT TERM

echo "== roc-obj-ls -v $module"
roc-obj-ls -v "$module" > "$work/list.txt" 2>"$work/list.err" || {
    cat "$work/list.err"; fail "roc-obj-ls failed"; }
cat "$work/list.txt"
echo

status=0
for target in $targets; do
    # Entry IDs look like hipv4-amdgcn-amd-amdhsa--gfx90a (or ...--gfx90a:xnack-).
    uris=$(awk -v t="$target" '$2 ~ ("amdgcn-amd-amdhsa--" t "(:|$)") {print $3}' "$work/list.txt")
    if [ -z "$uris" ]; then
        echo "FAIL: no code object for $target"
        status=1
        continue
    fi
    mkdir -p "$work/$target"
    : > "$work/$target.kernels"
    n=0
    for uri in $uris; do
        n=$((n + 1))
        roc-obj-extract -o - "$uri" > "$work/$target/co$n.co" 2>/dev/null ||
            { echo "FAIL: roc-obj-extract $uri"; status=1; continue; }
        "$readelf" -sW "$work/$target/co$n.co" |
            awk '$4 == "OBJECT" && $8 ~ /\.kd$/ {sub(/\.kd$/, "", $8); print $8}' |
            "$demangle" >> "$work/$target.kernels"
    done
    sort -u "$work/$target.kernels" -o "$work/$target.kernels"
    count=$(wc -l < "$work/$target.kernels")
    # Wavefront width the compiler chose (64 on gfx9, 32 on RDNA), from the HSA metadata.
    waves=""
    if [ -n "$notes" ]; then
        waves=$(for f in "$work/$target"/*.co; do "$notes" --notes "$f"; done 2>/dev/null |
                awk '/\.wavefront_size:/ {print $2}' | sort -u | tr '\n' ' ')
        waves=", wavefront size ${waves% }"
    fi
    echo "== $target: $n code object(s), $count kernel(s)$waves"
    sed 's/^/   /' "$work/$target.kernels"
    for k in $kernels; do
        grep -q -- "$k" "$work/$target.kernels" || { echo "FAIL: $target lacks $k"; status=1; }
    done
done

# TARGET-ONLY rules: kernel:gfxA,gfxB -> present on those targets, absent on the others;
# insn:MNEMONIC:gfxA,gfxB -> the instruction appears in those targets' code only.
objdump=""
for tool in llvm-objdump llvm-objdump-15 llvm-objdump-14; do
    if command -v "$tool" >/dev/null 2>&1; then objdump=$tool; break; fi
done
for rule in "$@"; do
    kind=kernel
    case $rule in insn:*) kind=insn; rule=${rule#insn:} ;; esac
    k=${rule%%:*}
    only=$(printf '%s' "${rule#*:}" | tr ',' ' ')
    if [ $kind = insn ] && [ -z "$objdump" ]; then
        echo "FAIL: no llvm-objdump to look for $k"; status=1; continue
    fi
    for target in $targets; do
        expected=0
        for t in $only; do [ "$t" = "$target" ] && expected=1; done
        found=0
        if [ $kind = insn ]; then
            n=$(for f in "$work/$target"/*.co; do "$objdump" -d "$f"; done 2>/dev/null | grep -c -- "$k")
            echo "== $target: $n x $k"
            [ "$n" -gt 0 ] && found=1
        else
            grep -q -- "$k" "$work/$target.kernels" 2>/dev/null && found=1
        fi
        if [ "$found" != "$expected" ]; then
            echo "FAIL: $k on $target: expected present=$expected, found=$found"
            status=1
        fi
    done
done

[ $status -eq 0 ] && echo "PASS: every target ($targets) holds every required kernel"
exit $status
