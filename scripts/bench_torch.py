#!/usr/bin/python3
"""bench_torch.py: `ddpm bench`'s workload in PyTorch, for scripts/bench.sh.

    /usr/bin/python3 scripts/bench_torch.py [--threads N] [--seconds S] [--batch B]
                                            [--warmup N] [--only train|sample|sgemm]
                                            [--precision fp32|bf16]
                                            [model flags as in `ddpm bench`]

The same module as ddpm (DDPMUNet from scripts/torch_reference.py, whose
parameter names and shapes are ddpm's), the same random workload and the same
`key=value` output keys as `ddpm bench` (progress goes to stderr):

  train   one optimizer step per iteration on a fixed random batch in [-1, 1]:
          t ~ U{0..T-1}, eps ~ N(0, I), x_t = sqrt(ab_t) x_0 + sqrt(1 - ab_t) eps
          (linear schedule, T = 1000), loss = mse(model(x_t, t), eps),
          backward, clip_grad_norm_(1.0), AdamW (lr 1e-3, betas 0.9/0.999,
          eps 1e-8, weight decay 0), EMA update (decay min(0.999, (1+k)/(10+k)))
          -- what `ddpm train` does per iteration (its LR warmup/cosine
          schedule is left out: a scalar per step, no cost).
  sample  one forward of a separate model in eval mode under
          torch.inference_mode() on B random images at random t.
  sgemm   torch.mm of two N x N float32 matrices (N = --sgemm-size, 2048).

--precision bf16 runs the train and sample parts under PyTorch's CPU mixed
precision, torch.autocast("cpu", dtype=torch.bfloat16) (oneDNN's bf16
kernels for the convolutions, linears and matmuls; weights, gradients, AdamW
and EMA stay float32), which is what a PyTorch user turns on for speed. Its
GroupNorm runs in float32 on a float32 copy of its input: torch 1.13's CPU
autocast fails on a bf16 input to group_norm (newer versions autocast it to
float32 the same way). The output says so (groupnorm=fp32).

Every iteration is timed on its own; the report gives medians (p10/p90 for
the spread) after --warmup untimed iterations, over --seconds per part (at
least 3 iterations). train_gflops uses ddpm's FLOP count (every conv, linear
and attention product, 2 FLOPs per multiply-add, forward per image, times 3
for a training step), counted here with forward hooks: mflops_per_image must
equal `ddpm bench`'s. peak_rss_mb is resource.getrusage's ru_maxrss right
after the training part, so it includes the Python interpreter and the torch
libraries as well as the model, gradients, optimizer state and activations;
base_rss_mb is the same measured after `import torch`, before any model exists.

Threads: torch.set_num_threads(N) for ATen/oneDNN, and OpenBLAS (which
torch.mm and the linear layers call) is told N threads too. Like the ddpm
binary (src/cli/main.c), OPENBLAS_CORETYPE is set to SkylakeX on CPUs with
AVX-512 unless already set, because OpenBLAS 0.3.21 does not recognise
recent Xeons and otherwise falls back to slow SSE3 kernels; both sides then
use the same BLAS kernels.

Run it with Debian's /usr/bin/python3 (python3-torch).
"""
import argparse
import ctypes
import math
import os
import resource
import sys
import time


def cpu_has_avx512():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return {"avx512f", "avx512bw", "avx512dq", "avx512vl"} <= flags
    except OSError:
        pass
    return False


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=0, help="threads, 0 = all cores (default 0)")
    ap.add_argument("--seconds", type=float, default=10.0, help="time budget per part (default 10)")
    ap.add_argument("--batch", type=int, default=64, help="images per step (default 64)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed iterations per part (default 3)")
    ap.add_argument("--only", choices=("train", "sample", "sgemm"), help="run one part")
    ap.add_argument("--sgemm-size", type=int, default=2048, help="sgemm matrix size (default 2048)")
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                    help="fp32, or bf16 autocast for train and sample (default fp32)")
    ap.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--size", type=int, default=None, help="28; 32 and 64 pick the presets")
    ap.add_argument("--ch", type=int, default=None)
    ap.add_argument("--ch-mult", default=None)
    ap.add_argument("--res-blocks", type=int, default=None)
    ap.add_argument("--attn", default=None, help="resolutions with attention, or none")
    ap.add_argument("--groups", type=int, default=None)
    ap.add_argument("--classes", type=int, default=0)
    ap.add_argument("--dropout", type=float, default=0.0)
    a = ap.parse_args()
    # `ddpm bench --size 32|64` takes the model preset of src/model/presets.c
    # for every shape flag not given; mirror it so both sides run one model.
    defaults = dict(ch=32, ch_mult="1,2,2", res_blocks=2, attn="7", groups=8)
    presets = {32: dict(ch=32, ch_mult="1,2,2,2", res_blocks=2, attn="16", groups=8),
               64: dict(ch=64, ch_mult="1,2,2,2", res_blocks=2, attn="16", groups=32)}
    fill = presets.get(a.size, defaults) if a.size is not None else defaults
    for k, v in fill.items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    if a.size is None:
        a.size = 28
    if a.threads < 0 or a.batch < 1 or a.warmup < 0 or a.seconds < 0 or a.sgemm_size < 1:
        ap.error("--threads, --batch, --warmup, --seconds and --sgemm-size must be positive")
    if a.threads == 0:
        a.threads = os.cpu_count() or 1
    return a


ARGS = parse_args()
# Before torch loads OpenBLAS (it reads these once, when the library loads).
if "OPENBLAS_CORETYPE" not in os.environ and cpu_has_avx512():
    os.environ["OPENBLAS_CORETYPE"] = "SkylakeX"
os.environ["OPENBLAS_NUM_THREADS"] = str(ARGS.threads)

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_reference import AttnBlock, DDPMUNet, count_params  # noqa: E402

T = 1000
MIN_ITERS = 3


def openblas():
    """The OpenBLAS that torch loaded (libblas.so.3 on Debian), or None."""
    for name in ("libblas.so.3", "libopenblas.so.0"):
        try:
            lib = ctypes.CDLL(name)
            lib.openblas_get_corename.restype = ctypes.c_char_p
            return lib
        except (OSError, AttributeError):
            continue
    return None


def quantile(v, q):
    """numpy's default (linear) quantile of sorted v, as in cmd_bench.c."""
    pos = q * (len(v) - 1)
    i = int(pos)
    if i >= len(v) - 1:
        return v[-1]
    return v[i] + (pos - i) * (v[i + 1] - v[i])


def measure(what, fn, prep=None):
    for _ in range(ARGS.warmup):
        if prep:
            prep()
        fn()
    times = []
    start = time.perf_counter()
    while len(times) < MIN_ITERS or time.perf_counter() - start < ARGS.seconds:
        if prep:
            prep()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    st = dict(n=len(times), total=sum(times), median=quantile(times, 0.5),
              p10=quantile(times, 0.1), p90=quantile(times, 0.9))
    print("bench_torch: %s: %d iterations in %.1f s, median %.3f ms (p10 %.3f, p90 %.3f)" %
          (what, st["n"], st["total"], 1e3 * st["median"], 1e3 * st["p10"], 1e3 * st["p90"]),
          file=sys.stderr, flush=True)
    return st


def forward_flops(cfg):
    """ddpm_unet_flops: forward FLOPs per image of convs, linears, attention."""
    model = DDPMUNet(**cfg).eval()
    total = [0.0]

    def hook(m, inp, out):
        if isinstance(m, nn.Conv2d):
            k = m.kernel_size[0] * m.kernel_size[1] * m.in_channels // m.groups
            total[0] += 2.0 * k * out.numel()
        elif isinstance(m, nn.Linear):
            total[0] += 2.0 * m.in_features * out.numel()
        elif isinstance(m, AttnBlock):
            N, C, H, W = out.shape
            total[0] += 2.0 * 2 * C * (H * W) ** 2 * N  # q.k and w.v

    hs = [m.register_forward_hook(hook) for m in model.modules()
          if isinstance(m, (nn.Conv2d, nn.Linear, AttnBlock))]
    x = torch.zeros(1, cfg["in_ch"], cfg["res"], cfg["res"])
    with torch.inference_mode():
        model(x, torch.zeros(1, dtype=torch.long), None)
    for h in hs:
        h.remove()
    return total[0]


def autocast():
    """The train and sample parts' context: bf16 autocast, or nothing."""
    if ARGS.precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def group_norm_fp32(self, x):
    """nn.GroupNorm.forward in float32 whatever the autocast (see the header)."""
    with torch.autocast("cpu", enabled=False):
        return F.group_norm(x.float(), self.num_groups, self.weight, self.bias, self.eps)


def model_name(cfg):
    attn = ",".join(map(str, cfg["attn_res"])) if cfg["attn_res"] else "none"
    s = "ch%d-mult%s-rb%d-attn%s-g%d" % (cfg["ch"], ",".join(map(str, cfg["ch_mult"])),
                                         cfg["num_res_blocks"], attn, cfg["groups"])
    if cfg["num_classes"] > 0:
        s += "-cls%d" % cfg["num_classes"]
    if cfg["dropout"] > 0:
        s += "-drop%g" % cfg["dropout"]
    return s


def main():
    a = ARGS
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    torch.set_num_threads(a.threads)
    blas = openblas()
    if blas is not None:
        blas.openblas_set_num_threads(a.threads)
    cfg = dict(in_ch=a.channels, res=a.size, ch=a.ch,
               ch_mult=tuple(int(v) for v in a.ch_mult.split(",")),
               num_res_blocks=a.res_blocks,
               attn_res=() if a.attn == "none" else tuple(int(v) for v in a.attn.split(",")),
               groups=a.groups, dropout=a.dropout, num_classes=a.classes)
    B, K = a.batch, cfg["num_classes"]
    if a.precision == "bf16":
        nn.GroupNorm.forward = group_norm_fp32
    parts = [a.only] if a.only else ["train", "sample", "sgemm"]

    torch.manual_seed(a.seed)
    g = torch.Generator().manual_seed(a.seed + 1)
    x0 = torch.rand((B, cfg["in_ch"], cfg["res"], cfg["res"]), generator=g) * 2 - 1
    labels = torch.randint(0, K, (B,), generator=g) if K > 0 else None
    flops = forward_flops(cfg)
    nparams = count_params(DDPMUNet(**cfg))
    core = blas.openblas_get_corename().decode() if blas is not None else "unknown"
    print("bench_torch: model %s, %d parameters, %.1f MFLOPs/image forward; batch %d; %d threads; "
          "torch %s; OpenBLAS %s; %s" % (model_name(cfg), nparams, flops / 1e6, B, a.threads,
                                         torch.__version__, core, a.precision),
          file=sys.stderr, flush=True)

    # linear schedule (docs/design.md §5), in double
    s = 1000.0 / T
    betas = torch.linspace(s * 1e-4, s * 0.02, T, dtype=torch.float64)
    ab = torch.cumprod(1 - betas, 0)
    sab, s1mab = ab.sqrt().float(), (1 - ab).sqrt().float()

    res = {}
    rss = 0.0
    if "train" in parts:
        model = DDPMUNet(**cfg).train()
        params = [p for p in model.parameters()]
        opt = torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
        ema = [p.detach().clone() for p in params]
        step = [0]

        def train_step():
            t = torch.randint(0, T, (B,), generator=g)
            eps = torch.randn(x0.shape, generator=g)
            xt = sab[t].view(B, 1, 1, 1) * x0 + s1mab[t].view(B, 1, 1, 1) * eps
            lab = None
            if K > 0:  # classifier-free guidance label dropout, p = 0.1
                lab = torch.where(torch.rand(B, generator=g) < 0.1, torch.full_like(labels, K), labels)
            with autocast():
                out = model(xt, t, lab)
            loss = F.mse_loss(out.float(), eps)
            if not math.isfinite(loss.item()):
                raise RuntimeError("loss is %g" % loss.item())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            with torch.no_grad():
                d = min(0.999, (1 + step[0]) / (10 + step[0]))
                torch._foreach_mul_(ema, d)
                torch._foreach_add_(ema, params, alpha=1 - d)
            step[0] += 1

        res["train"] = measure("train", train_step)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        del model, params, opt, ema

    if "sample" in parts:
        inf = DDPMUNet(**cfg).eval()
        x = torch.randn((B, cfg["in_ch"], cfg["res"], cfg["res"]), generator=g)
        tt = [torch.zeros(B, dtype=torch.long)]

        def prep():
            tt[0] = torch.randint(0, T, (B,), generator=g)

        def sample_step():
            with torch.inference_mode(), autocast():
                inf(x, tt[0], labels)

        res["sample"] = measure("sample", sample_step, prep)
        if "train" not in parts:
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        del inf

    if "sgemm" in parts:
        n = a.sgemm_size
        A = torch.rand((n, n), generator=g) * 2 - 1
        Bm = torch.rand((n, n), generator=g) * 2 - 1
        C = torch.empty((n, n))
        res["sgemm"] = measure("sgemm", lambda: torch.mm(A, Bm, out=C))
        if len(parts) == 1:
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    out = [("model", model_name(cfg)),
           ("image", "%dx%dx%d" % (cfg["in_ch"], cfg["res"], cfg["res"])),
           ("timesteps", T), ("batch", B), ("threads", a.threads), ("params", nparams),
           ("mflops_per_image", "%.6g" % (flops / 1e6)), ("blas_core", core),
           ("torch_version", torch.__version__), ("precision", a.precision)]
    if a.precision == "bf16":
        out.append(("groupnorm", "fp32"))
    f = lambda v: "%.6g" % v  # noqa: E731
    if "train" in res:
        r = res["train"]
        out += [("train_iters", r["n"]), ("train_ms_per_iter", f(1e3 * r["median"])),
                ("train_ms_p10", f(1e3 * r["p10"])), ("train_ms_p90", f(1e3 * r["p90"])),
                ("train_img_per_s", f(B / r["median"])),
                ("train_gflops", f(3 * flops * B / r["median"] / 1e9))]
    if "sample" in res:
        r = res["sample"]
        out += [("sample_iters", r["n"]), ("sample_ms_per_step", f(1e3 * r["median"])),
                ("sample_ms_p10", f(1e3 * r["p10"])), ("sample_ms_p90", f(1e3 * r["p90"])),
                ("sample_img_steps_per_s", f(B / r["median"]))]
    if "sgemm" in res:
        r = res["sgemm"]
        n = a.sgemm_size
        out += [("sgemm_n", n), ("sgemm_iters", r["n"]), ("sgemm_ms", f(1e3 * r["median"])),
                ("sgemm_gflops", f(2.0 * n ** 3 / r["median"] / 1e9))]
    if "train" in res and "sgemm" in res:
        tg = 3 * flops * B / res["train"]["median"] / 1e9
        sg = 2.0 * a.sgemm_size ** 3 / res["sgemm"]["median"] / 1e9
        out.append(("gflops_ratio", f(tg / sg)))
    out += [("base_rss_mb", f(base_rss)), ("peak_rss_mb", f(rss))]
    for k, v in out:
        print("%s=%s" % (k, v))


if __name__ == "__main__":
    main()
