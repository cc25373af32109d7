#!/usr/bin/env bash
# install_test.sh BUILD_DIR SRC_DIR [CC]: `cmake --install` into a temporary prefix,
# then build examples/train_and_sample.c against the installed ddpm.pc the way
# an outside program would, run it, and run the installed `ddpm`.
set -euo pipefail
BUILD=$1 SRC=$2 CC=${3:-cc} # the build's compiler: the pc file carries its OpenMP flag
PREFIX=$(mktemp -d "${TMPDIR:-/tmp}/ddpm-install.XXXXXX")
trap 'rm -rf "$PREFIX"' EXIT
cmake --install "$BUILD" --prefix "$PREFIX" >/dev/null
export PKG_CONFIG_PATH=$(dirname "$(find "$PREFIX" -name ddpm.pc)")
for f in bin/ddpm include/ddpm/train.h include/ddpm/pipeline.h; do
  [ -e "$PREFIX/$f" ] || { echo "install_test: $f not installed" >&2; exit 1; }
done
[ -n "$(find "$PREFIX" -name libddpm.a)" ] || { echo "install_test: libddpm.a not installed" >&2; exit 1; }
# the pc file points into the prefix it was installed to, not the build tree
pkg-config --cflags ddpm | grep -q -- "-I$PREFIX/include" || { echo "install_test: bad Cflags" >&2; exit 1; }
"$CC" -std=c11 -O1 "$SRC/examples/train_and_sample.c" $(pkg-config --cflags --libs ddpm) -o "$PREFIX/example"
"$PREFIX/example" "$PREFIX/grid.png" "$PREFIX/ckpt.safetensors"
[ -s "$PREFIX/grid.png" ] || { echo "install_test: no grid.png" >&2; exit 1; }
# the README's library snippet, compiled and run as a reader would
awk '/^```c$/{on=1; next} /^```$/{on=0} on' "$SRC/README.md" > "$PREFIX/readme.c"
[ -s "$PREFIX/readme.c" ] || { echo "install_test: no C snippet in README.md" >&2; exit 1; }
"$CC" -std=c11 -O1 "$PREFIX/readme.c" $(pkg-config --cflags --libs ddpm) -o "$PREFIX/readme"
mkdir -p "$PREFIX/run/runs/mnist" && cp "$PREFIX/ckpt.safetensors" "$PREFIX/run/runs/mnist/"
(cd "$PREFIX/run" && "$PREFIX/readme") || { echo "install_test: the README snippet failed" >&2; exit 1; }
[ -s "$PREFIX/run/grid.png" ] || { echo "install_test: the README snippet wrote no grid.png" >&2; exit 1; }
"$PREFIX/bin/ddpm" --version
echo "install_test: ok"
