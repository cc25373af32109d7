#!/usr/bin/python3
"""karras_reference.py: an independent numpy reference for the Karras samplers.

Re-implements, in float64, the step rules of diffusers'
EulerDiscreteScheduler, HeunDiscreteScheduler and
EulerAncestralDiscreteScheduler (src/diffusers/schedulers/
scheduling_euler_discrete.py, scheduling_heun_discrete.py,
scheduling_euler_ancestral_discrete.py) with use_karras_sigmas=True,
timestep_spacing="linspace", prediction_type="epsilon":
  sigma_t = sqrt((1 - ab_t) / ab_t); the Karras grid (rho = 7) between
  sigma_{T-1} and sigma_0, then 0; model input x / sqrt(sigma^2 + 1);
  Euler x += (sigma_next - sigma) eps; Heun: Euler predictor, then the mean of
  both slopes, no correction on the last step (2K - 1 model calls); Euler
  ancestral: sigma_up = sqrt(s_n^2 (s^2 - s_n^2) / s^2),
  sigma_down = sqrt(s_n^2 - sigma_up^2), x += (sigma_down - s) eps + sigma_up z.
Two differences from diffusers, both the library's documented choices:
  - the model gets the integer timestep nearest to diffusers' fractional
    _sigma_to_t(sigma) (log sigma interpolated over t), as ddpm's UNet takes
    integer t;
  - x~ starts at x_T sqrt(sigma_max^2 + 1) (x_T ~ N(0, I) is x_{T-1} in the
    VP view; diffusers' "leading" spacing does the same, its "linspace" uses
    sigma_max).
Churn (S_churn > 0) follows Karras et al. 2022 Algorithm 2 (gamma =
min(S_churn / K, sqrt(2) - 1), S_tmin = 0, S_tmax = inf, S_noise = 1, the
model evaluated at the churned x and sigma_hat); diffusers' Euler evaluates
the model before adding the churn noise, so those cases are Algorithm 2's.

The model is the optimal noise predictor for data x0 ~ N(mu, s^2 I)
(tests/test_sampler.c's gauss_eps). The noise is the library's: image i's
stream is xoshiro256** seeded from ddpm_sampler_image_seed(seed, i), normals
by Box-Muller (src/core/rng.c), re-implemented here; x_T first, then per step
the churn noise and the ancestral noise, D normals each. The fixture stores
the noise too, and the C test checks its own streams give the same numbers.

Writes tests/data/karras_ref.fix (the fixture format of torch_reference.py),
read by tests/test_sampler.c. Run with /usr/bin/python3; CI never runs it.
"""
import math
import os
import struct
import sys

import numpy as np

T = 1000
MU, S = 0.1, 0.2
N, D = 4, 6
SEED = 7
M64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
# (name, sampler, K, churn)
CASES = (("euler10", "euler", 10, 0.0), ("heun5", "heun", 5, 0.0), ("eulera8", "euler_a", 8, 0.0),
         ("heun6c", "heun", 6, 2.0), ("euler6c", "euler", 6, 1.0))


def splitmix64(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


class Stream:
    """The library's per-image stream (src/core/rng.c, sampler.c)."""

    def __init__(self, seed, i):
        x = splitmix64(seed) ^ ((GOLDEN * (i + 1)) & M64)
        self.s = []
        for _ in range(4):
            x = (x + GOLDEN) & M64
            self.s.append(splitmix64(x))

    def u64(self):
        s = self.s
        rotl = lambda v, k: ((v << k) | (v >> (64 - k))) & M64
        r = (rotl((s[1] * 5) & M64, 7) * 9) & M64
        t = (s[1] << 17) & M64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = rotl(s[3], 45)
        return r

    def uniform(self):
        return (self.u64() >> 11) * 2.0 ** -53

    def normals(self, n):
        out = []
        while len(out) < n:
            u1 = 1.0 - self.uniform()
            u2 = self.uniform()
            r = math.sqrt(-2.0 * math.log(u1))
            th = 6.283185307179586476925286766559 * u2
            out += [r * math.cos(th), r * math.sin(th)]
        return np.array(out[:n], dtype=np.float32).astype(np.float64)  # the library's floats


def sigma_to_t(sigma, log_sigmas):  # diffusers' _sigma_to_t
    log_sigma = np.log(max(sigma, 1e-10))
    dists = log_sigma - log_sigmas
    low = min(int(np.cumsum(dists >= 0).argmax()), len(log_sigmas) - 2)
    w = np.clip((log_sigmas[low] - log_sigma) / (log_sigmas[low] - log_sigmas[low + 1]), 0, 1)
    return (1 - w) * low + w * (low + 1)


def karras(K, sig_all):  # diffusers' _convert_to_karras over linspace timesteps
    ts = np.linspace(0, T - 1, K)[::-1]
    s = np.interp(ts, np.arange(T), sig_all)
    ramp = np.linspace(0, 1, K)
    lo, hi = s[-1] ** (1 / 7.0), s[0] ** (1 / 7.0)
    return np.concatenate([(hi + ramp * (lo - hi)) ** 7.0, [0.0]])


def run(kind, K, churn, ab):
    sig_all = np.sqrt((1 - ab) / ab)
    log_sigmas = np.log(sig_all)
    sig = karras(K, sig_all)
    tint = lambda s: int(math.floor(sigma_to_t(s, log_sigmas) + 0.5))

    def eps(xt, t):
        a = ab[t]
        return np.sqrt(1 - a) * (xt - np.sqrt(a) * MU) / (a * S * S + 1 - a)

    streams = [Stream(SEED, i) for i in range(N)]
    draws = [[] for _ in range(N)]

    def noise():
        z = np.stack([st.normals(D) for st in streams])
        for i in range(N):
            draws[i].append(z[i])
        return z

    xT = noise()
    x = xT * np.sqrt(sig[0] ** 2 + 1)
    states, calls = [xT.copy()], 0
    gamma = min(churn / K, math.sqrt(2) - 1) if churn > 0 else 0.0
    for j in range(K):
        s, sn = sig[j], sig[j + 1]
        sh = s * (1 + gamma)
        if gamma > 0:
            x = x + math.sqrt(sh * sh - s * s) * noise()
        e = eps(x / math.sqrt(sh * sh + 1), tint(sh))
        calls += 1
        if kind == "euler_a":
            su = math.sqrt(sn * sn * (s * s - sn * sn) / (s * s))
            sd = math.sqrt(sn * sn - su * su)
            x = x + (sd - s) * e
            if su > 0:
                x = x + su * noise()
        elif kind == "euler" or sn == 0:
            x = x + (sn - sh) * e
        else:
            xp = x + (sn - sh) * e
            e2 = eps(xp / math.sqrt(sn * sn + 1), tint(sn))
            calls += 1
            x = x + (sn - sh) * (e + e2) / 2
        states.append(x / math.sqrt(sn * sn + 1) if sn > 0 else x.copy())
    assert calls == (2 * K - 1 if kind == "heun" else K)
    ts = [tint(s) for s in sig[:K]]
    return sig, ts, np.stack([np.concatenate(d) for d in draws]), states


def entry(name, a):
    a = np.asarray(a)
    dt, a = (1, a.astype("<i4")) if a.dtype.kind in "iu" else (0, a.astype("<f4"))
    nb = name.encode()
    b = struct.pack("<H", len(nb)) + nb + struct.pack("<BB", dt, a.ndim)
    return b + b"".join(struct.pack("<I", d) for d in a.shape) + a.tobytes()


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "karras_ref.fix")
    betas = np.linspace(1e-4, 0.02, T)  # docs/design.md §5 linear at T = 1000
    ab = np.cumprod(1.0 - betas)
    chunks = []
    for name, kind, K, churn in CASES:
        sig, ts, noise, states = run(kind, K, churn, ab)
        chunks += [entry(name + ".sigmas", sig), entry(name + ".timesteps", np.array(ts)),
                   entry(name + ".noise", noise), entry(name + ".states", np.stack(states))]
    with open(out + ".tmp", "wb") as f:
        f.write(b"DDPMFIX\0" + struct.pack("<II", 1, len(chunks)) + b"".join(chunks))
    os.replace(out + ".tmp", out)
    print("wrote %s (%d entries)" % (out, len(chunks)))


if __name__ == "__main__":
    main()
