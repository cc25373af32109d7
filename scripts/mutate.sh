#!/usr/bin/env bash
# mutate.sh [ID...]: deliberate mutations of the library, each of which the
# test suite must catch (docs/MUTATIONS.md holds the table this reproduces).
#
# For every mutation (or only the IDs given): apply it to its file with sed
# (it must change exactly one line), rebuild the ddpm binary and the listed
# tests (FULL=1: everything), run those tests with ctest (FULL=1: the whole
# suite), report
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
SC1	src/diffusion/schedule.c	test_schedule test_pipeline	s|double c = cos((u + 0.008) / 1.008 \* PI / 2.0);|double c = cos(u * PI / 2.0);|
SC2	src/diffusion/schedule.c	test_schedule test_pipeline	s|double sc = 1000.0 / (double)T, lo|double sc = 1.0, lo|
SC3	src/diffusion/schedule.c	test_schedule test_sampler	s|out->beta\[i\] = tp == t - 1 ? base->beta\[t\] : 1.0 - ab / abp;|out->beta[i] = base->beta[t];|
SC4	src/diffusion/schedule.c	test_schedule test_sampler	s|tau\[i\] = (int)((2 \* (int64_t)i \* num + den) / (2 \* den));|tau[i] = (int)((2 * (int64_t)i * num) / (2 * den));|
SC5	src/diffusion/schedule.c	test_schedule test_eval_bpd	s|s->posterior_log_var_clipped\[0\] = T > 1 ? s->posterior_log_var_clipped\[1\] : log(s->beta\[0\]);|s->posterior_log_var_clipped[0] = log(s->beta[0]);|
SA1	src/diffusion/sampler.c	test_sampler	s|return kind == DDPM_SAMPLER_DPMPP_2M ? DDPM_SPACING_LOGSNR : DDPM_SPACING_UNIFORM;|return DDPM_SPACING_UNIFORM;|
SA2	src/diffusion/sampler.c	test_sampler	s|if (sp == DDPM_SPACING_QUADRATIC) return u \* u \* (T - 1);|if (sp == DDPM_SPACING_QUADRATIC) return u * (T - 1);|
SA3	src/diffusion/sampler.c	test_sampler test_pipeline	s|ddpm_sampler_image_seed(seed, (int64_t)first + off + k)|ddpm_sampler_image_seed(seed, (int64_t)off + k)|
SA4	src/diffusion/sampler.c	test_sampler test_pipeline	s|a.labels = labels ? labels + off : NULL;|a.labels = labels;|
SA5	src/diffusion/sampler.c	test_sampler	s|int first = i == a->K - 1, t_last = first ? -1 : a->tau\[i + 1\];|int first = 1, t_last = -1;|
DF1	src/diffusion/diffusion.c	test_diffusion test_sampler	s|c0 = 1.0 + 1.0 / (2.0 \* r);|c0 = 1.0 + 1.0 / r;|
DF2	src/diffusion/diffusion.c	test_diffusion test_sampler	s|double x0 = clip1((x - rb \* (double)eps_hat\[j\]) \* ra);|double x0 = (x - rb * (double)eps_hat[j]) * ra;|
G1	src/diffusion/guidance.c	test_sampler test_pipeline	s|eps_hat\[j\] = (float)(wu \* (double)eu\[j\] + w \* (double)ec\[j\]);|eps_hat[j] = (float)(wu * (double)ec[j] + w * (double)eu[j]);|
G2	src/diffusion/guidance.c	test_sampler test_pipeline	s|g->lab2\[n\] = labels ? labels\[n\] : g->num_classes;|g->lab2[n] = g->num_classes;|
OB1	src/diffusion/objective.c	test_objective test_sampler	s|e = a \* p + b \* x;|e = a * p - b * x;|
OB2	src/diffusion/objective.c	test_objective test_pipeline	s|if (st \|\| om->obj == DDPM_OBJ_EPS) return st;|if (st \|\| 1) return st;|
OB3	src/diffusion/objective.c	test_objective test_sampler	s|e = (x - a \* p) / b;|e = (x - p) / b;|
RD1	src/io/data.c	test_data test_eval_cli	s|ds->num_classes = maxl + 1;|ds->num_classes = maxl;|
RD2	src/io/data.c	test_data	s|int j = (int)ddpm_rng_below(\&rng, (uint32_t)i + 1);|int j = (int)ddpm_rng_below(\&rng, (uint32_t)i);|
RD3	src/io/data.c	test_data test_train	s|            s->epoch++;|            s->epoch += 0;|
RD4	src/io/imagefolder.c	test_imagefolder	s|v\[c\] = (x \* a + bg \* (255 - a) + 127) / 255;|v[c] = (x * a + bg * (255 - a)) / 255;|
RD5	src/io/imagefolder.c	test_imagefolder	s|row\[(size_t)(flip ? S - 1 - x : x) \* C\]|row[(size_t)x * C]|
RD6	src/io/imagefolder.c	test_imagefolder	s|(uint8_t)((299 \* v\[0\] + 587 \* v\[1\] + 114 \* v\[2\] + 500) / 1000)|(uint8_t)((v[0] + v[1] + v[2]) / 3)|
RD7	src/io/safetensors.c	test_safetensors	s|if (sp->end - sp->begin != numel \* 4) {|if (sp->end - sp->begin < numel * 4) {|
PL1	src/pipeline/pipeline.c	test_pipeline test_eval_cli	s|p->info.ema = ck.has_ema \&\& !(o \&\& o->raw_weights);|p->info.ema = ck.has_ema;|
PL2	src/pipeline/pipeline.c	test_pipeline test_eval_cli	s|ddpm_checkpoint_read(\&ck, p->info.ema ? "ema." : "", p->params)|ddpm_checkpoint_read(\&ck, "", p->params)|
PL3	src/pipeline/pipeline.c	test_pipeline	s|#define LEGACY_T 1000|#define LEGACY_T 100|
PL4	src/pipeline/pipeline.c	test_pipeline	s|int kind = DDPM_SCHED_LINEAR, obj = DDPM_OBJ_EPS;|int kind = DDPM_SCHED_COSINE, obj = DDPM_OBJ_EPS;|
PL5	src/pipeline/pipeline.c	test_pipeline	s|o->label >= 0 ? o->label : (first + i) % C;|o->label >= 0 ? o->label : i % C;|
PL6	src/pipeline/pipeline.c	test_pipeline	s|if (!st \&\& !in->objective_assumed) st = |if (0) st = |
PL7	src/pipeline/pipeline.c	test_pipeline	s|    memcpy(p->params, params, p->nparams \* sizeof(float));|    (void)0;|
PL8	src/pipeline/pipeline.c	test_pipeline	s|ddpm_guidance_init(\&g, ddpm_objective_eps, \&p->om, o->guidance, C, D, B)|ddpm_guidance_init(\&g, ddpm_objective_eps, \&p->om, 1.0f, C, D, B)|
EV1	src/eval/fid.c	test_eval_metrics test_eval_e2e	s|d, n, 1.0 / (n - 1), c, d, 0.0, s->cov, d);|d, n, 1.0 / n, c, d, 0.0, s->cov, d);|
EV2	src/eval/prdc.c	test_eval_metrics test_eval_e2e	s|radius\[r0 + i\] = best\[k - 1\];|radius[r0 + i] = best[k - 2];|
EV3	src/eval/session.c	test_eval_e2e	s|nr = n < r->test->n ? n : r->test->n;|nr = r->test->n;|
EV4	src/eval/session.c	test_eval_e2e	s|ddpm_precision_recall(\&m->precision, \&m->recall, |ddpm_precision_recall(\&m->recall, \&m->precision, |
EV5	src/eval/bpd.c	test_eval_bpd test_eval_e2e	s|r->bpd_stderr = sd / sqrt((double)n);|r->bpd_stderr = sd;|
EV6	src/eval/bpd.c	test_eval_bpd test_eval_e2e	s|(tot2 - n \* mu \* mu) / (n - 1))|(tot2 - n * mu * mu) / n)|
EV7	src/eval/bpd.c	test_eval_bpd test_eval_e2e	s|for (int t = 1; t < T; t++) r->kl += r->terms\[t\];|for (int t = 0; t < T; t++) r->kl += r->terms[t];|
DI1	src/train/dist.c	test_dist	s|MPI_IN_PLACE, x + off, c, MPI_FLOAT, MPI_SUM,|MPI_IN_PLACE, x + off, c, MPI_FLOAT, MPI_MAX,|
DI2	src/train/dist.c	test_dist	s|MPI_IN_PLACE, x, n, MPI_DOUBLE, MPI_SUM,|MPI_IN_PLACE, x, n, MPI_DOUBLE, MPI_MAX,|
CL1	src/cli/args.c	test_cli_sample test_cli_train	s|if (v < (long long)o->min \|\| v > (long long)o->max) {|if (v > (long long)o->max) {|
CL2	src/cli/args.c	test_cli_sample test_eval_cli	s|ddpm_pipeline_opts po = {.raw_weights = raw_weights, |ddpm_pipeline_opts po = {.raw_weights = false, |
CL3	src/cli/args.c	test_cli_sample test_cli_train	s|if (o->seen) return usage_error(cmd, "option given twice:", o->name);|if (0) return usage_error(cmd, "option given twice:", o->name);|
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
  # stdin from /dev/null: mpirun (test_dist) would otherwise read the rest of the table
  # FULL=1 runs every test, so every test is rebuilt (else a test built
  # against the previous mutation would fail for it)
  targets="--target ddpm $tests"
  [ "${FULL:-0}" = 1 ] && targets=""
  if ! cmake --build "$BUILD" -j2 $targets >"$LOG/build" 2>&1 </dev/null; then
    result="caught by the build"
  else
    regex="^($(echo $tests | tr ' ' '|'))\$"
    [ "${FULL:-0}" = 1 ] && regex="."
    ctest --test-dir "$BUILD" -j2 -R "$regex" >"$LOG/ctest" 2>&1 </dev/null || true
    failed=$(sed -n 's/^[[:space:]]*[0-9]* - \(test_[a-z_0-9]*\) (.*/\1/p' "$LOG/ctest" | tr '\n' ' ')
    if [ -n "$failed" ]; then result="caught by ${failed% }"; else result="MISSED (ran: $tests)"; missed=1; fi
  fi
  printf '%-3s %s:%s  %s\n' "$id" "$file" "$line" "$result"
  restore
done <<<"$TABLE"
cmake --build "$BUILD" -j2 >/dev/null 2>&1 || echo "mutate.sh: rebuilding the restored tree failed" >&2
exit $missed
