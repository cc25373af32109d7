#!/usr/bin/python3
"""bpd_reference.py: an independent numpy implementation of the variational
bound in bits/dim (improved-diffusion's calc_bpd_loop: _vb_terms_bpd,
_prior_bpd, normal_kl, discretized_gaussian_log_likelihood), for
tests/test_eval_bpd.c.

Input tests/data/bpd_in.fix, dumped by the C test (the model's eps
predictions come from C, so no UNet is needed here):
    DDPM_BPD_DUMP=tests/data/bpd_in.fix build/test_eval_bpd
with x0 (N, D), noise (T, N, D) as the C loop drew it, xt (T, N, D) the
float32 x_t the model saw, eps (T, N, D) its predictions.
Output tests/data/bpd_ref.fix: config, x0, eps, terms.small and
terms.large (N, T + 1): column t the term of timestep t (0 = decoder),
column T the prior, in bits/dim. Run with /usr/bin/python3; CI never runs it.
"""
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from eval_reference import write_fixture  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "tests", "data")


def read_fixture(path):
    out = {}
    with open(path, "rb") as f:
        b = f.read()
    assert b[:8] == b"DDPMFIX\0"
    ver, count = struct.unpack_from("<II", b, 8)
    p = 16
    for _ in range(count):
        (nl,) = struct.unpack_from("<H", b, p)
        p += 2
        name = b[p:p + nl].decode()
        p += nl
        dt, nd = struct.unpack_from("<BB", b, p)
        p += 2
        dims = struct.unpack_from("<%dI" % nd, b, p)
        p += 4 * nd
        n = int(np.prod(dims)) if nd else 1
        if dt == 2:
            out[name] = b[p:p + n].decode()
            p += n
        else:
            out[name] = np.frombuffer(b, dtype="<f4" if dt == 0 else "<i4", count=n, offset=p).reshape(dims)
            p += 4 * n
    assert p == len(b)
    return out


class Diffusion:
    def __init__(self, T):
        s = 1000.0 / T
        betas = np.minimum(np.linspace(s * 1e-4, s * 0.02, T, dtype=np.float64), 0.999)
        self.T, self.betas = T, betas
        alphas = 1.0 - betas
        self.ac = np.cumprod(alphas)
        self.ac_prev = np.append(1.0, self.ac[:-1])
        self.post_var = betas * (1.0 - self.ac_prev) / (1.0 - self.ac)
        self.post_logvar_clipped = np.log(np.append(self.post_var[1], self.post_var[1:]))
        self.coef1 = betas * np.sqrt(self.ac_prev) / (1.0 - self.ac)
        self.coef2 = (1.0 - self.ac_prev) * np.sqrt(alphas) / (1.0 - self.ac)
        self.large_logvar = np.log(np.append(self.post_var[1], betas[1:]))


def normal_kl(m1, lv1, m2, lv2):
    return 0.5 * (-1.0 + lv2 - lv1 + np.exp(lv1 - lv2) + (m1 - m2) ** 2 * np.exp(-lv2))


def approx_cdf(x):
    return 0.5 * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * np.power(x, 3))))


def disc_loglik(x, means, log_scales):
    c = x - means
    inv = np.exp(-log_scales)
    cdf_plus = approx_cdf(inv * (c + 1.0 / 255.0))
    cdf_min = approx_cdf(inv * (c - 1.0 / 255.0))
    log_cdf_plus = np.log(np.maximum(cdf_plus, 1e-12))
    log_one_minus = np.log(np.maximum(1.0 - cdf_min, 1e-12))
    log_delta = np.log(np.maximum(cdf_plus - cdf_min, 1e-12))
    return np.where(x < -0.999, log_cdf_plus, np.where(x > 0.999, log_one_minus, log_delta))


def terms(df, x0, xt_all, eps_all, large):
    T, (N, D) = df.T, x0.shape
    out = np.zeros((N, T + 1))
    for t in range(T):
        xt, eps = xt_all[t].astype(np.float64), eps_all[t].astype(np.float64)
        x0h = np.clip(np.sqrt(1.0 / df.ac[t]) * xt - np.sqrt(1.0 / df.ac[t] - 1.0) * eps, -1.0, 1.0)
        model_mean = df.coef1[t] * x0h + df.coef2[t] * xt
        model_lv = df.large_logvar[t] if large else df.post_logvar_clipped[t]
        if t == 0:
            nll = -disc_loglik(x0, model_mean, 0.5 * model_lv)
            out[:, 0] = nll.mean(1) / np.log(2.0)
        else:
            true_mean = df.coef1[t] * x0 + df.coef2[t] * xt
            kl = normal_kl(true_mean, df.post_logvar_clipped[t], model_mean, model_lv)
            out[:, t] = kl.mean(1) / np.log(2.0)
    m = np.sqrt(df.ac[-1]) * x0
    out[:, T] = normal_kl(m, np.log(1.0 - df.ac[-1]), 0.0, 0.0).mean(1) / np.log(2.0)
    return out


def main():
    fin = read_fixture(os.environ.get("DDPM_BPD_IN", os.path.join(DATA, "bpd_in.fix")))
    cfg = dict(l.split("=") for l in fin["config"].split())
    T = int(cfg["T"])
    df = Diffusion(T)
    x0 = fin["x0"].astype(np.float64)
    # the C x_t agrees with q_sample of its noise (float32 rounding)
    q = np.sqrt(df.ac)[:, None, None] * x0[None] + np.sqrt(1.0 - df.ac)[:, None, None] * fin["noise"]
    err = np.abs(q - fin["xt"]).max()
    assert err < 1e-5, err
    small = terms(df, x0, fin["xt"], fin["eps"], False)
    large = terms(df, x0, fin["xt"], fin["eps"], True)
    write_fixture(os.path.join(DATA, "bpd_ref.fix"),
                  [("config", fin["config"]), ("x0", fin["x0"]), ("eps", fin["eps"]),
                   ("terms.small", small), ("terms.large", large)])
    sys.stdout.write("q_sample max err %.3g\ntotal bpd small %s\ntotal bpd large %s\n"
                     % (err, small.sum(1), large.sum(1)))


if __name__ == "__main__":
    main()
