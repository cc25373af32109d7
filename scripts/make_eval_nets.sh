#!/usr/bin/env bash
# make_eval_nets.sh: train the MNIST and Fashion-MNIST evaluation networks
# that the library ships (src/eval/nets, embedded by src/eval/clf_nets.c),
# as `ddpm eval` trains any dataset's network: the default recipe, one thread;
# and the emoji folder's (scripts/fetch_emoji.sh; RGB, alpha white, 32 px:
# the 64 px images reduced 2 x 2 are the same pixels, so one network).
# Run it only to change the recipe: a network trained on another CPU (other
# kernels) differs in its last bits, and every published FID would move.
#
# usage: scripts/make_eval_nets.sh [MNIST_DIR] [EMOJI_DIR]   (MNIST_DIR default
#        data/mnist, EMOJI_DIR data/emoji; Fashion-MNIST from Debian's
#        dataset-fashion-mnist)
# Then update NET_MNIST / NET_FASHION / NET_EMOJI in src/eval/clf_nets.c to
# the new names, rebuild, and put the new SHA-256 prefixes in README.md and
# docs/quality.md.
set -euo pipefail
cd "$(dirname "$0")/.."
DDPM=${DDPM:-build/ddpm}
MNIST=${1:-data/mnist}
EMOJI=${2:-data/emoji}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for d in "$MNIST" /usr/share/datasets/fashion-mnist; do
  zcat -f "$d"/t10k-images-idx3-ubyte* > "$tmp/test.idx"
  DDPM_EVAL_RETRAIN=1 DDPM_EVAL_CACHE="$tmp/nets" "$DDPM" eval "$tmp/test.idx" --data "$d" \
    --threads 1 -n 16 | grep '^net'
done
mkdir -p "$tmp/gen" # 8 emoji as generated images: the folder at 64 px, the network at 32
find "$EMOJI" -name '*.png' | LC_ALL=C sort > "$tmp/pngs" # no pipe into head: pipefail and SIGPIPE
head -8 "$tmp/pngs" | while read -r f; do cp "$f" "$tmp/gen/"; done
DDPM_EVAL_RETRAIN=1 DDPM_EVAL_CACHE="$tmp/nets" "$DDPM" eval "$tmp/gen" --data "$EMOJI" --threads 1 | grep '^net'
mkdir -p src/eval/nets
for f in "$tmp"/nets/*.safetensors; do
  case $(basename "$f") in fashion*) n=fashion ;; emoji*) n=emoji ;; *) n=mnist ;; esac
  rm -f src/eval/nets/"$n"-*.safetensors
  cp "$f" src/eval/nets/"$n"-"${f##*-}"
  echo "src/eval/nets/$n-${f##*-}"
done
