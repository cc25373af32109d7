#!/usr/bin/python3
"""kid_reference.py: numpy reference for `ddpm eval`'s KID (src/eval/kid.c).

Writes tests/data/kid_ref.fix (the DDPMFIX format of tests/fixture.h), read
by tests/test_eval_kid.c:
  kid.a (300, 16), kid.b (200, 16)  float32 feature sets (ReLU-like: >= 0)
  kid.ia (20, 50), kid.ib (20, 50)  the rows of each subset (integers as f32)
  config (text)                      kid=..., kid_std=... (%.17g)

Two re-implementations, which must agree to 1e-12 relative:
  clean-fid's kernel_distance (cleanfid/fid.py): per subset
    a = (x x^T / d + 1)^3 + (y y^T / d + 1)^3, b = (x y^T / d + 1)^3,
    t += (a.sum() - diag(a).sum()) / (m - 1) - b.sum() * 2 / m, kid = t / S / m
  torch-fidelity's kid (torch_fidelity/metric_kid.py): polynomial_mmd of
    degree 3, gamma 1/d, coef0 1, the unbiased mmd2 per subset; mean and
    np.std (ddof 0) over subsets.
Both draw their subsets with np.random.choice(..., replace=False); here the
draws are fixed in the fixture so the C code evaluates the same subsets
(ddpm_kid_subsets); x are rows of kid.a, y rows of kid.b. Everything in
float64 from the float32 values.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from eval_reference import write_fixture  # noqa: E402


def clean_fid_subset(x, y):
    d, m = x.shape[1], x.shape[0]
    a = (x @ x.T / d + 1) ** 3 + (y @ y.T / d + 1) ** 3
    b = (x @ y.T / d + 1) ** 3
    return ((a.sum() - np.diag(a).sum()) / (m - 1) - b.sum() * 2 / m) / m


def torch_fidelity_mmd(x, y):
    d = x.shape[1]
    k_xx, k_yy, k_xy = ((x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3)
    m = k_xx.shape[0]
    kt_xx = k_xx.sum() - np.diagonal(k_xx).sum()
    kt_yy = k_yy.sum() - np.diagonal(k_yy).sum()
    return (kt_xx + kt_yy) / (m * (m - 1)) - 2 * k_xy.sum() / (m * m)


def main():
    rng = np.random.default_rng(20181)
    d, S, m = 16, 20, 50
    a = np.maximum(rng.normal(0.3, 1.0, (300, d)), 0).astype(np.float32)
    b = np.maximum(rng.normal(0.5, 1.2, (200, d)), 0).astype(np.float32)
    ia = np.stack([rng.choice(300, m, replace=False) for _ in range(S)])
    ib = np.stack([rng.choice(200, m, replace=False) for _ in range(S)])
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    v = np.array([torch_fidelity_mmd(a64[ia[s]], b64[ib[s]]) for s in range(S)])
    c = np.mean([clean_fid_subset(a64[ia[s]], b64[ib[s]]) for s in range(S)])
    assert abs(c - v.mean()) <= 1e-12 * abs(v).max(), (c, v.mean())
    cfg = "kid=%.17g\nkid_std=%.17g\n" % (v.mean(), v.std())
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "kid_ref.fix")
    write_fixture(out, [("kid.a", a), ("kid.b", b), ("kid.ia", ia.astype(np.float32)),
                        ("kid.ib", ib.astype(np.float32)), ("config", cfg)])
    print(cfg, end="")


if __name__ == "__main__":
    main()
