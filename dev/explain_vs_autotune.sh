#!/bin/sh
# Does AUTO's default policy pick what autotune measures as fastest?  For every shape of
# the given suites and every given backend, runs `polyattn explain` twice (policy, then
# --autotune) and prints one CSV line per (suite, shape, backend) with both choices.
# Usage: dev/explain_vs_autotune.sh POLYATTN "cuda opencl:0" article fa2 decode > out.csv
set -u
polyattn=${1:?usage: explain_vs_autotune.sh POLYATTN BACKENDS SUITE...}
backends=$2
shift 2
field() { sed -n "s/.*\"$1\": *\"\\([^\"]*\\)\".*/\\1/p" | head -n 1; }
echo "suite,batch,heads_q,heads_kv,seq_q,seq_kv,head_dim,mask,dtype,backend,policy,autotune,agree,autotune_reason"
for suite in "$@"; do
  "$polyattn" bench --suite "$suite" --list | tail -n +2 |
  while IFS=, read -r s b hq hkv sq skv d dv mask dtype; do
    causal=""
    case $mask in causal-bottom-right) causal="--causal bottom-right" ;;
                  causal-top-left) causal="--causal top-left" ;; esac
    for target in $backends; do
      be=${target%%:*}; dev=0
      [ "$be" != "$target" ] && dev=${target#*:}
      # shellcheck disable=SC2086
      set -- --batch "$b" --heads "$hq" --heads-kv "$hkv" --seq-q "$sq" --seq-kv "$skv" \
        --head-dim "$d" --head-dim-v "$dv" --dtype "$dtype" $causal --backend "$be" \
        --device "$dev" --json
      pol=$("$polyattn" explain "$@" 2>/dev/null | field chosen)
      tuned_json=$("$polyattn" explain "$@" --autotune 2>/dev/null)
      tun=$(echo "$tuned_json" | field chosen)
      why=$(echo "$tuned_json" | field reason | tr ',' ';')
      agree=no
      [ -n "$pol" ] && [ "$pol" = "$tun" ] && agree=yes
      echo "$s,$b,$hq,$hkv,$sq,$skv,$d,$mask,$dtype,$target,$pol,$tun,$agree,$why"
    done
  done
done
