#!/usr/bin/env bash
# mutate.sh [ID...]: deliberate mutations of the library, each of which the
# test suite must catch (docs/MUTATIONS.md holds the table this reproduces).
#
# For every mutation (or only the IDs given): apply it to its file with sed
# (it must change exactly one line), rebuild the ddpm binary and the listed
# tests, run those tests with ctest (FULL=1: the whole suite), report
# "caught by <failing tests>" or "MISSED", and restore the file with
# `git checkout -- FILE`. Refuses to run on a work tree with uncommitted
# changes (it would throw them away). Needs a configured build
# (scripts/bootstrap.sh); BUILD_DIR overrides build/. Exit status: 0 when
# every mutation was caught, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
  echo "mutate.sh: the work tree has uncommitted changes; commit or stash them first" >&2
  exit 2
fi
BUILD=${BUILD_DIR:-build}
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
  echo "mutate.sh: no configured build in $BUILD (run scripts/bootstrap.sh)" >&2
  exit 2
fi
LOG=$(mktemp -d)
cur=""
restore() { if [ -n "$cur" ]; then git checkout -- "$cur"; cur=""; fi; }
trap 'restore; rm -rf "$LOG"' EXIT
trap 'exit 130' INT TERM

# id <TAB> file <TAB> tests to run <TAB> sed expression
TABLE=$(cat <<'MUTATIONS'
N1	src/nn/norm.c	test_norm test_unet	s|float m2 = (float)(s2 \* (double)rf / (double)gsize); /\*|float m2 = (float)(s2 * (double)rf / (double)(gsize + 1)); /*|
N3	src/nn/norm.c	test_norm test_unet	s|float m2 = (float)(s2 \* (double)rf / (double)gsize);$|float m2 = (float)(s2 * (double)rf / (double)(gsize + 1));|
N2	src/nn/norm.c	test_norm test_unet	s|\*rstd = (float)(1.0 / sqrt(var + (double)DDPM_GN_EPS));|*rstd = (float)(1.0 / sqrt(var + 1e-3));|
A1	src/nn/attn.c	test_attn test_unet	s|ddpm_gemm(false, false, C, T, T, scale, q, T, d, T, 1.0f, dk, T);|ddpm_gemm(false, false, C, T, T, 1.01f * scale, q, T, d, T, 1.0f, dk, T);|
A2	src/nn/attn.c	test_attn test_unet	s|ddpm_gemm(true, false, T, T, C, scale, q, T, k, T, 0.0f, a, T);|ddpm_gemm(true, false, T, T, C, 0.5f * scale, q, T, k, T, 0.0f, a, T);|
C1	src/nn/conv.c	test_conv test_unet	s|                if (ih >= H) continue;|                if (ih >= H - 1) continue;|
C2	src/nn/conv.c	test_conv test_unet	s|for (size_t i = 0; i < HW; i++) yf\[i\] += b;|for (size_t i = 1; i < HW; i++) yf[i] += b;|
S1	src/diffusion/diffusion.c	test_diffusion test_cli_sample	s|    if (i > 0) sigma = sqrt(|    if (i >= 0) sigma = sqrt(|
S2	src/diffusion/diffusion.c	test_diffusion test_cli_sample	s|s->beta\[i\] : s->posterior_var\[i\]|s->beta[i] : s->beta[i]|
S3	src/diffusion/diffusion.c	test_diffusion test_cli_sample	s|double sigma = (double)eta \* sqrt((1.0 - abp) / (1.0 - ab)) \* sqrt(1.0 - ab / abp);|double sigma = (double)eta * sqrt(1.0 - ab / abp);|
S4	src/diffusion/diffusion.c	test_diffusion test_cli_sample	s|        double e = (x - sa \* x0) / sb;|        double e = (double)eps_hat[j];|
O1	src/train/optim.c	test_optim test_train	s|float bc2_sqrt = (float)sqrt(bc2);|float bc2_sqrt = (float)bc2;|
O2	src/train/optim.c	test_optim test_train	s|        float p = params\[i\] \* decay;|        float p = params[i];|
T1	src/train/optim.c	test_optim test_train	s|return d < (double)max_decay ? (float)d : max_decay;|return max_decay;|
T2	src/train/train.c	test_optim test_train	s|float lr = ddpm_lr_at(tr->step, |float lr = ddpm_lr_at(tr->step + 1, |
T3	src/train/train.c	test_optim test_train	s|double gnorm = ddpm_clip_grad_norm(grads, tr->n, c->clip);|double gnorm = ddpm_grad_norm(grads, tr->n);|
T4	src/train/optim.c	test_optim test_train	s|    if (coef < 1.0) {|    if (coef < 0.5) {|
T5	src/train/train.c	test_train	s|ddpm_rng_uniform(\&tr->rng) < c->cond_drop|ddpm_rng_uniform(\&tr->rng) < 0.5f * c->cond_drop|
T6	src/train/train.c	test_train	s|\&tr->adam, lr, tr->step + 1);|\&tr->adam, lr, tr->step + 2);|
T7	src/train/train.c	test_train	s|ddpm_ema_decay_at(tr->step, c->ema_decay)|ddpm_ema_decay_at(tr->step + 5, c->ema_decay)|
T8	src/train/train.c	test_train test_optim	s|ddpm_ema_decay_at(tr->step, c->ema_decay)|c->ema_decay|
R1	src/train/train_ckpt.c	test_train test_cli_train	s|    tr->order_epoch = (uint32_t)epoch;|    tr->order_epoch = 0;|
R2	src/train/train.c	test_train test_cli_train	s|ddpm_epoch_order_resume(\&tr->order, ds->n, tr->order_seed, |ddpm_epoch_order_resume(\&tr->order, ds->n, tr->order_seed + 1, |
K1	src/io/checkpoint.c	test_checkpoint test_cli_sample	s|        if (j < t->numel)$|        if (0 \&\& j < t->numel)|
K2	src/io/checkpoint.c	test_checkpoint	s|same = t->shape\[d\] == pi->shape\[d\];|same = t->shape[0] == pi->shape[0];|
MUTATIONS
)

want=" $* "
missed=0
while IFS=$'\t' read -r id file tests expr; do
  [ -z "$id" ] && continue
  if [ $# -gt 0 ] && [[ "$want" != *" $id "* ]]; then continue; fi
  cur=$file
  sed -i -e "$expr" "$file"
  changed=$(git diff --numstat -- "$file" | awk '{print $1 "/" $2}')
  if [ "$changed" != "1/1" ]; then
    printf '%-3s %-28s did not apply to exactly one line (%s)\n' "$id" "$file" "${changed:-0/0}"
    restore
    missed=1
    continue
  fi
  line=$(git diff -U0 -- "$file" | sed -n 's/^@@ -\([0-9]*\).*/\1/p' | head -1)
  if ! cmake --build "$BUILD" -j2 --target ddpm $tests >"$LOG/build" 2>&1; then
    result="caught by the build"
  else
    regex="^($(echo $tests | tr ' ' '|'))\$"
    [ "${FULL:-0}" = 1 ] && regex="."
    ctest --test-dir "$BUILD" -j2 -R "$regex" >"$LOG/ctest" 2>&1 || true
    failed=$(sed -n 's/^[[:space:]]*[0-9]* - \(test_[a-z_0-9]*\) (.*/\1/p' "$LOG/ctest" | tr '\n' ' ')
    if [ -n "$failed" ]; then result="caught by ${failed% }"; else result="MISSED (ran: $tests)"; missed=1; fi
  fi
  printf '%-3s %s:%s  %s\n' "$id" "$file" "$line" "$result"
  restore
done <<<"$TABLE"
cmake --build "$BUILD" -j2 >/dev/null 2>&1 || echo "mutate.sh: rebuilding the restored tree failed" >&2
exit $missed
