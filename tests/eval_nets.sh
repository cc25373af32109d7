#!/usr/bin/env bash
# eval_nets.sh DDPM SOURCE_DIR: the evaluation networks are the ones the
# library ships, so every machine measures FID with the same file: on an empty
# cache, `ddpm eval` on MNIST (and on Fashion-MNIST when Debian's
# dataset-fashion-mnist is installed; CI installs it; and on the emoji folder
# of scripts/fetch_emoji.sh when $DDPM_EMOJI_DIR or data/emoji holds it, at
# 32 and 64 px) uses a network it does not train, whose SHA-256 prefix is the one README.md (MNIST) and
# docs/quality.md (both) print, and which is the file in src/eval/nets.
# MNIST: $DDPM_SHARED_MNIST (CMake sets it).
set -euo pipefail
DDPM=$1 SRC=$2
MNIST=${DDPM_SHARED_MNIST:-$SRC/data/mnist}
FASHION=/usr/share/datasets/fashion-mnist
W=$(mktemp -d "${TMPDIR:-/tmp}/eval_nets.XXXXXX")
trap 'rm -rf "$W"' EXIT
fail() { echo "eval_nets: $*" >&2; exit 1; }

# check NAME DATA_DIR DOC...: the hash ddpm eval reports, against the shipped file and each DOC
check() {
  local name=$1 dir=$2 out h f doc; shift 2
  [[ -r $dir/t10k-images-idx3-ubyte.gz || -r $dir/t10k-images-idx3-ubyte ]] || fail "no $name test split in '$dir'"
  out=$(DDPM_EVAL_CACHE="$W/cache" "$DDPM" eval "$dir"/t10k-images-idx3-ubyte* --data "$dir" -n 64 --threads 1 \
        2> "$W/$name.err") || fail "ddpm eval on $name: $(cat "$W/$name.err")"
  ! grep -q "training" "$W/$name.err" || fail "$name: ddpm eval trained a network instead of using the shipped one"
  h=$(sed -n 's/^net_sha256=//p' <<< "$out")
  [[ $h =~ ^[0-9a-f]{16}$ ]] || fail "$name: no net_sha256 in: $out"
  f=$(ls "$SRC"/src/eval/nets/"$name"-*.safetensors)
  [[ $(sha256sum "$f" | cut -c1-16) == "$h" ]] || fail "$name: net_sha256 $h is not the hash of $f"
  for doc in "$@"; do
    grep -q "net_sha256=$h" "$SRC/$doc" || fail "$name: $doc does not print net_sha256=$h"
  done
  echo "eval_nets: $name: net_sha256=$h (shipped, in $*)"
}

# check_emoji DIR SIZE: the folder's shipped network for generated images of
# SIZE px (only their shape matters here): 64 px, 8 of the folder's PNGs; 32
# px, an IDX file of 8 blank RGB images
check_emoji() {
  local dir=$1 size=$2 in out h f
  if [[ $size == 64 ]]; then
    in=$W/png64
    mkdir -p "$in"
    find "$dir" -name '*.png' | LC_ALL=C sort > "$W/pngs" # no pipe into head: pipefail and SIGPIPE
    head -8 "$W/pngs" | xargs -I{} cp {} "$in/"
  else
    in=$W/blank32.idx
    printf '\x00\x00\x08\x04\x00\x00\x00\x08\x00\x00\x00\x03\x00\x00\x00\x20\x00\x00\x00\x20' > "$in"
    head -c $((8 * 3 * 32 * 32)) /dev/zero >> "$in"
  fi
  out=$(DDPM_EVAL_CACHE="$W/cache" "$DDPM" eval "$in" --data "$dir" --threads 1 2> "$W/emoji.err") ||
    fail "ddpm eval on emoji at $size px: $(cat "$W/emoji.err")"
  ! grep -q "training" "$W/emoji.err" || fail "emoji $size px: ddpm eval trained a network instead of using the shipped one"
  h=$(sed -n 's/^net_sha256=//p' <<< "$out")
  f=$(ls "$SRC"/src/eval/nets/emoji-*.safetensors)
  [[ $(sha256sum "$f" | cut -c1-16) == "$h" ]] || fail "emoji $size px: net_sha256 $h is not the hash of $f"
  grep -q "net_sha256=$h" "$SRC/docs/quality.md" || fail "emoji: docs/quality.md does not print net_sha256=$h"
  echo "eval_nets: emoji $size px: net_sha256=$h (shipped, in docs/quality.md)"
}

check mnist "$MNIST" README.md docs/quality.md
# A cache an earlier version wrote under the shipped network's name (other
# metadata, say) is replaced by the shipped file: here the Fashion network,
# valid and of the same shape, stands in for it.
mnist_net=$(ls "$SRC"/src/eval/nets/mnist-*.safetensors)
cp "$SRC"/src/eval/nets/fashion-*.safetensors "$W/cache/$(basename "$mnist_net")"
DDPM_EVAL_CACHE="$W/cache" "$DDPM" eval "$MNIST"/t10k-images-idx3-ubyte* --data "$MNIST" -n 64 --threads 1 \
  > "$W/stale.out" 2> "$W/stale.err" || fail "ddpm eval over a stale cache: $(cat "$W/stale.err")"
cmp -s "$mnist_net" "$W/cache/$(basename "$mnist_net")" || fail "a stale cached MNIST network was not replaced"
grep -q "net_sha256=$(sha256sum "$mnist_net" | cut -c1-16)" "$W/stale.out" || fail "over a stale cache: $(cat "$W/stale.out")"
echo "eval_nets: mnist: a stale cached file is replaced by the shipped one"
if [[ -d $FASHION ]]; then
  check fashion "$FASHION" docs/quality.md
elif [[ -n ${CI:-} ]]; then
  fail "CI must install dataset-fashion-mnist"
else
  echo "eval_nets: fashion: not checked (no $FASHION)"
fi
EMOJI=${DDPM_EMOJI_DIR:-$SRC/data/emoji}
if [[ -d $EMOJI/smileys-emotion ]]; then
  check_emoji "$EMOJI" 32
  check_emoji "$EMOJI" 64
elif [[ -n ${CI:-} ]]; then
  fail "CI must fetch the emoji folder (scripts/fetch_emoji.sh)"
else
  echo "eval_nets: emoji: not checked (no $EMOJI; scripts/fetch_emoji.sh)"
fi
