#!/usr/bin/python3
"""eval_reference.py: numpy references for `ddpm eval`'s metrics.

Writes tests/data/eval_ref.fix (the DDPMFIX format of tests/fixture.h), read
by tests/test_eval_metrics.c:
  fid.a (300, 16), fid.b (200, 16)   float32 feature sets
  pr.real (120, 5), pr.fake (100, 5) float32 point sets
  config (text)                      fid=..., precision=..., recall=... (k=3)

The Frechet distance here takes the route of pytorch-fid rather than the C
code's: Tr sqrt(S1 S2) as the sum of the square roots of the (real,
non-negative) eigenvalues of the non-symmetric product S1 @ S2, with np.cov
(ddof=1) statistics in float64. Precision/recall (Kynkaanniemi et al. 2019)
by brute force: radius of a point = distance to its k-th nearest other
point of its own set; a point is covered when within the radius of some
point of the other set (<=).

Run with /usr/bin/python3 (numpy only); CI never runs it.
"""
import os
import struct
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "data", "eval_ref.fix")


def write_fixture(path, entries):
    chunks = []
    for name, v in entries:
        nb = name.encode()
        if isinstance(v, str):
            dt, dims, payload = 2, [len(v.encode())], v.encode()
        else:
            a = np.ascontiguousarray(v, dtype="<f4")
            dt, dims, payload = 0, list(a.shape), a.tobytes()
        b = struct.pack("<H", len(nb)) + nb + struct.pack("<BB", dt, len(dims))
        b += b"".join(struct.pack("<I", d) for d in dims)
        chunks.append(b + payload)
    with open(path + ".tmp", "wb") as f:
        f.write(b"DDPMFIX\0" + struct.pack("<II", 1, len(chunks)))
        for c in chunks:
            f.write(c)
    os.replace(path + ".tmp", path)


def fid(a, b):
    a, b = a.astype(np.float64), b.astype(np.float64)
    m1, m2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    ev = np.linalg.eigvals(s1 @ s2)
    tr_sqrt = np.sum(np.sqrt(np.clip(ev.real, 0, None)))
    return float(((m1 - m2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt)


def knn_radius(x, k):
    d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    return np.sort(d, axis=1)[:, k - 1]


def coverage(q, p, radius_p):
    d = ((q[:, None, :] - p[None, :, :]) ** 2).sum(-1)
    return float((d <= radius_p[None, :]).any(axis=1).mean())


def precision_recall(real, fake, k=3):
    real, fake = real.astype(np.float64), fake.astype(np.float64)
    return coverage(fake, real, knn_radius(real, k)), coverage(real, fake, knn_radius(fake, k))


def main():
    rng = np.random.default_rng(2019)
    d = 16
    # correlated, non-commuting covariances; b has a rank-deficient part like ReLU features
    ma = rng.normal(size=(d, d))
    mb = rng.normal(size=(d, d))
    a = (rng.normal(size=(300, d)) @ ma * 0.5 + 1.0).astype(np.float32)
    b = (rng.normal(size=(200, d)) @ mb * 0.4 + 0.7).astype(np.float32)
    b[:, :3] = np.maximum(b[:, :3], 0)
    real = rng.normal(size=(120, 5)).astype(np.float32)
    fake = (rng.normal(size=(100, 5)) * 1.3 + 0.5).astype(np.float32)
    f = fid(a, b)
    p, r = precision_recall(real, fake, 3)
    cfg = "fid=%.17g\nprecision=%.17g\nrecall=%.17g\nk=3\n" % (f, p, r)
    write_fixture(OUT, [("config", cfg), ("fid.a", a), ("fid.b", b), ("pr.real", real), ("pr.fake", fake)])
    sys.stdout.write("wrote %s\n%s" % (os.path.normpath(OUT), cfg))


if __name__ == "__main__":
    main()
