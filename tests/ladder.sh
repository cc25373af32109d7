#!/usr/bin/env bash
# ladder.sh SRC_DIR: the module ladder of docs/ARCHITECTURE.md, checked on
# the #include lines of src/*/*.{c,h}: a module may include public headers
# (include/ddpm/X.h) and private ones ("area/X.h") of its own rung or below,
# never above. A public header missing from the table below fails too, so a
# new header has to be placed on the ladder.
set -euo pipefail
cd "${1:-$(dirname "$0")/..}"
RUNGS=(core io nn model diffusion pipeline train eval report run cli)
declare -A HEADER=(
  [common]=core [rng]=core [tensor]=core [kv]=core
  [csv]=io [data]=io [image]=io [imagefolder]=io [safetensors]=io [toydata]=io [meta]=io [dataset]=io
  [act]=nn [attn]=nn [conv]=nn [embed]=nn [linear]=nn [loss]=nn [nn]=nn [norm]=nn [pool]=nn [resample]=nn [bf16]=nn
  [unet]=model [checkpoint]=model [mlp]=model
  [diffusion]=diffusion [objective]=diffusion [sampler]=diffusion [schedule]=diffusion
  [pipeline]=pipeline
  [optim]=train [train]=train [toy]=train [bench]=train
  [classifier]=eval [eval]=eval [energy]=eval
  [report]=report
  [progress]=run [run]=run
)
rank() { local i; for i in "${!RUNGS[@]}"; do [ "${RUNGS[$i]}" = "$1" ] && { echo "$i"; return; }; done; echo -1; }
bad=0
for h in include/ddpm/*.h; do
  b=$(basename "$h" .h)
  [ -n "${HEADER[$b]:-}" ] || { echo "ladder: include/ddpm/$b.h is on no rung (add it to tests/ladder.sh)" >&2; bad=1; }
done
for f in src/*/*.c src/*/*.h; do
  mod=$(basename "$(dirname "$f")"); r=$(rank "$mod")
  [ "$r" -ge 0 ] || { echo "ladder: $f: module '$mod' is on no rung" >&2; bad=1; continue; }
  while IFS= read -r inc; do
    if [[ $inc =~ ^ddpm/([a-z0-9_]+)\.h$ ]]; then to=${HEADER[${BASH_REMATCH[1]}]:-}
    elif [[ $inc =~ ^([a-z]+)/[a-z0-9_]+\.h$ ]]; then to=${BASH_REMATCH[1]}
    else continue; fi
    [ -n "$to" ] || continue
    if [ "$(rank "$to")" -gt "$r" ]; then echo "ladder: $f ($mod) includes $inc ($to, a higher rung)" >&2; bad=1; fi
  done < <(sed -n 's/^#include "\([^"]*\)".*/\1/p' "$f")
done
[ $bad -eq 0 ] && echo "ladder: every include goes down or sideways"
exit $bad
