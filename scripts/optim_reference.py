#!/usr/bin/python3
"""optim_reference.py: the torch.optim.AdamW numbers embedded in tests/test_optim.c.

    /usr/bin/python3 scripts/optim_reference.py

Runs torch.optim.AdamW for 5 steps on a 7-element vector (one element with an
always-zero gradient, one with a zero gradient at steps 2 and 3) for three
(lr, weight_decay) cases and prints C arrays: the start vector, the gradient
of every step, per case the params after the last step, and exp_avg and
exp_avg_sq after the last step (they do not depend on lr or weight decay). ddpm's config and lr are float, so torch is given the float32-rounded
values of lr, betas, eps and weight_decay (as Python floats); then the C code
must agree to the last bit (the test allows a few ulps).

It also checks that the float32 formula documented in include/ddpm/optim.h
(fused multiply-adds for the moments, (step * m) / denom for the update)
reproduces torch bit for bit, on these vectors and on random ones.
"""
import math

import numpy as np
import torch

f32 = np.float32
N, STEPS = 7, 5
CASES = [(1e-3, 0.0), (1e-3, 0.01), (0.1, 0.1)]

P0 = np.array([0.5, -1.25, 2.0, 0.75, -0.3, 1.5, -2.5], dtype=f32)
G = np.array([[0.1, -0.2, 0.3, 0.0, 1.5, -0.05, 0.7],
              [0.12, -0.25, -0.1, 0.0, 1.25, 0.0, -0.6],
              [-0.3, -0.2, 0.35, 0.0, 2.0, 0.0, 0.65],
              [0.05, 0.4, 0.3, 0.0, -1.75, 0.02, 0.8],
              [0.2, -0.15, -0.5, 0.0, 1.0, -0.04, 0.75]], dtype=f32)


def fma(a, b, c):
    """float32 fused multiply-add via double (the product is exact in double)."""
    a, b, c = (np.broadcast_to(np.asarray(x, dtype=f32), np.shape(c)).astype(np.float64)
               for x in (a, b, c))
    return (a * b + c).astype(f32)


def emulate(p, m, v, g, lr, wd, b1, b2, eps, t):
    """include/ddpm/optim.h's formula in numpy float32."""
    p = p * f32(1 - lr * wd)
    m = fma(g, f32(1 - b1), m * f32(b1))
    v = fma(f32(1 - b2) * g, g, v * f32(b2))
    d = np.sqrt(v) / f32(math.sqrt(1 - b2 ** t)) + f32(eps)
    p = p + (f32(-(lr / (1 - b1 ** t))) * m) / d
    return p, m, v


def run(p0, grads, lr, wd, b1=0.9, b2=0.999, eps=1e-8):
    lr, wd, b1, b2, eps = (float(f32(x)) for x in (lr, wd, b1, b2, eps))
    p = torch.tensor(p0.copy(), requires_grad=True)
    opt = torch.optim.AdamW([p], lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)
    q, m, v = p0.copy(), np.zeros_like(p0), np.zeros_like(p0)
    for t, g in enumerate(grads, 1):
        p.grad = torch.tensor(g)
        opt.step()
        q, m, v = emulate(q, m, v, g, lr, wd, b1, b2, eps, t)
        st = opt.state[p]
        got = (p.detach().numpy(), st["exp_avg"].numpy(), st["exp_avg_sq"].numpy())
        for name, a, b in zip(("param", "exp_avg", "exp_avg_sq"), got, (q, m, v)):
            assert np.array_equal(a, b), f"{name} differs from the emulation at step {t}"
    return [x.copy() for x in got]


def cfloat(x):
    """Shortest float32 literal that round-trips, e.g. 0.5f, -1.25e-07f."""
    s = str(f32(x))
    return (s if any(c in s for c in ".e") else s + ".0") + "f"


def carr(name, a):
    a = np.asarray(a, dtype=f32)
    if a.ndim == 1:
        return f"static const float {name}[{a.shape[0]}] = {{{', '.join(map(cfloat, a))}}};"
    rows = ",\n    ".join("{" + ", ".join(map(cfloat, r)) + "}" for r in a)
    return f"static const float {name}[{a.shape[0]}][{a.shape[1]}] = {{\n    {rows}}};"


def main():
    # the emulation must hold beyond the embedded case (scalar and vector kernels)
    rng = np.random.RandomState(0)
    for n in (7, 1000):
        for _ in range(5):
            p0 = rng.randn(n).astype(f32)
            grads = [(rng.randn(n) * 10 ** rng.uniform(-3, 1)).astype(f32) for _ in range(6)]
            run(p0, grads, 10 ** rng.uniform(-4, -0.5), rng.uniform(0, 0.2))

    print(f"/* torch {torch.__version__}: /usr/bin/python3 scripts/optim_reference.py */")
    print(carr("REF_INIT", P0))
    print(carr("REF_G", G))
    moments = None
    for k, (lr, wd) in enumerate(CASES):
        p, m, v = run(P0, G, lr, wd)
        assert moments is None or (np.array_equal(m, moments[0]) and np.array_equal(v, moments[1]))
        moments = (m, v)
        print(f"/* case {k}: lr {lr:g}, weight_decay {wd:g} */")
        print(carr(f"REF_P{k}", p))
    print("/* exp_avg and exp_avg_sq after step 5 (the same in every case) */")
    print(carr("REF_M", moments[0]))
    print(carr("REF_V", moments[1]))


if __name__ == "__main__":
    main()
