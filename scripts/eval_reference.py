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

It also writes tests/data/eval_e2e.fix, read by tests/test_eval_e2e.c: a
whole evaluation run from the same NETWORK and IMAGES the C code gets
(ddpm_eval_ref_init on a test split + ddpm_eval_images on generated u8
images), the classifier's forward pass (src/eval/classifier.c: conv 3x3 pad
1 -> 16, ReLU, max-pool 2; conv 3x3 -> 32, ReLU, max-pool 2; fc 128, ReLU =
the features; fc K = the logits) in float64 here:
  clf.conv1.weight ... clf.fc2.bias   float32 weights (PyTorch names/shapes)
  test.images (240, 1, 8, 8), gen.images (160, 1, 8, 8)  u8 values as f32
  test.labels, gen.labels             (n) labels as f32
  config (text)  fid, precision, recall (k = 3, against the first
                 min(n_gen, n_test) test images), confidence,
                 class_entropy, label_accuracy, and the tolerances the
                 float32 forward pass of the C code allows (fid_tol,
                 confidence_tol; precision, recall, class_entropy and
                 label_accuracy are exact: the script checks that no
                 decision lies within the float32 error of its threshold).

Error bounds. The C code computes the features in float32; its error is
bounded here by SAFETY = 100 times the error of the same forward pass run
in float32 by numpy (direct dot products: about 1e-6 on features of size
3). The C code sums in other orders and runs conv2 (16 -> 32 channels) as a
Winograd convolution (src/nn/conv.c), whose error is up to about an order
of magnitude above a direct one's; SAFETY covers both, and the C test
checks the assumption itself: the features of the first 8 generated images
(gen.feats, float64 here, stored as float32) must be within feat_err (the
bound per image, as a Euclidean norm) of the C code's. The a-priori
bounds are useless here: the worst-case (L + 1) u sum |w x| propagated
through |W| gives 1.7e-3 and Higham & Mary's probabilistic one (lambda = 8)
1.2e-3 per feature, too loose to decide a single precision/recall query.
FID is W2^2 between the Gaussians; moving
every feature row by Delta_i moves a Gaussian fit by at most
delta = sqrt(2 sum_i |Delta_i|^2 / (n - 1)) in W2 (the coupling of row i
with row i + Delta_i), and W2 is a metric, so
  |FID' - FID| <= 2 sqrt(FID) (delta_1 + delta_2) + (delta_1 + delta_2)^2,
plus the double-precision eigen-decomposition's share (each eigenvalue of
the d x d product within d u64 |S1| |S2|, its square root within the
square root of that; 2 d of them). Precision/recall decisions |q - p| <=
r_p move by at most |e_q| + |e_p| + 2 max |e| (the radius is a k-th nearest
distance): the script asserts every decision is farther than that from
its threshold. The top softmax probability moves by at most half the
largest logit error (the rows of the softmax Jacobian sum to <= 1/2 in
absolute value), plus 8 u for float32's softmax.

Run with /usr/bin/python3 (numpy only); CI never runs it.
"""
import os
import struct
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "data", "eval_ref.fix")
OUT_E2E = os.path.join(HERE, "..", "tests", "data", "eval_e2e.fix")
U32 = 2.0 ** -24
U64 = 2.0 ** -53


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


# ---- the end-to-end fixture: a network, images, and every metric ----------------

RES, K, C1, C2, F = 8, 4, 16, 32, 128


def conv3(x, w, b):
    n, c, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((n, w.shape[0], h, wd), dtype=x.dtype)
    for ky in range(3):
        for kx in range(3):
            out += np.einsum("nchw,fc->nfhw", xp[:, :, ky:ky + h, kx:kx + wd], w[:, :, ky, kx])
    return out + b[None, :, None, None]


def pool2(x):
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


SAFETY = 100.0


def net(params, u8, dt):
    """The classifier's features and logits, every operation in dtype dt."""
    w1, b1, w2, b2, w3, b3, w4, b4 = [params[k].astype(dt) for k in PARAM_NAMES]
    # the C code's input, (float)px / 127.5f - 1.0f: exact in float32 arithmetic
    x = (u8.astype(np.float32) / np.float32(127.5) - np.float32(1.0)).astype(dt)
    a = pool2(np.maximum(conv3(x, w1, b1).astype(dt), 0))
    c = pool2(np.maximum(conv3(a, w2, b2).astype(dt), 0))
    flat = c.reshape(len(c), -1)
    h = np.maximum(flat @ w3.T + b3, 0)
    return h, h @ w4.T + b4


def forward(params, u8):
    """Features and logits in float64, and the error bounds of a float32
    forward pass: SAFETY times the largest error of the same pass run in
    float32 by numpy (per image: the norm of its feature error; per logit)."""
    h, z = net(params, u8, np.float64)
    h32, z32 = net(params, u8, np.float32)
    eh = SAFETY * np.sqrt(((h32 - h) ** 2).sum(1)).max()
    ez = SAFETY * np.abs(z32 - z).max()
    return h, np.full(h.shape, eh / np.sqrt(h.shape[1])), z, np.full(z.shape, ez)


PARAM_NAMES = ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc1.weight", "fc1.bias",
               "fc2.weight", "fc2.bias"]


def make_images(rng, n, block_lo, block_hi, noise_hi):
    """A bright 2x2 block in quadrant k = label over uniform noise."""
    px = rng.integers(0, noise_hi, size=(n, 1, RES, RES))
    lab = rng.integers(0, K, size=n)
    for i in range(n):
        k = lab[i]
        y0, x0 = 1 + 4 * (k // 2) + rng.integers(0, 2), 1 + 4 * (k % 2) + rng.integers(0, 2)
        px[i, 0, y0:y0 + 2, x0:x0 + 2] = rng.integers(block_lo, block_hi, size=(2, 2))
    return px.astype(np.uint8), lab


def gauss_w2_tol(fa, ea, fb, eb, fid_value):
    delta = sum(np.sqrt(2 * (e ** 2).sum() / (len(f) - 1)) for f, e in ((fa, ea), (fb, eb)))
    sa, sb = np.cov(fa, rowvar=False), np.cov(fb, rowvar=False)
    d = fa.shape[1]
    alg = 2 * d * np.sqrt(d * U64 * np.linalg.norm(sa, 2) * np.linalg.norm(sb, 2))
    return 2 * np.sqrt(max(fid_value, 0)) * delta + delta ** 2 + alg


def pr_uncertain(q, eq, p, ep, k):
    """Query q_i is covered when m_i = min_j (|q_i - p_j| - r_j) <= 0; an error
    moves |q_i - p_j| - r_j by at most |e_qi| + |e_pj| + 2 max |e_p| (r_j is a
    k-th nearest distance). Returns how many queries lie that close to the
    threshold (their decision may differ in float32)."""
    nq, npn = np.sqrt((eq ** 2).sum(1)), np.sqrt((ep ** 2).sum(1))
    dpp = np.sqrt(((p[:, None, :] - p[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(dpp, np.inf)
    r = np.sort(dpp, axis=1)[:, k - 1]
    dqp = np.sqrt(((q[:, None, :] - p[None, :, :]) ** 2).sum(-1))
    m = (dqp - r[None, :]).min(1)
    move = nq + 3 * npn.max() + 1e-9 * (1 + r.max())
    return int((np.abs(m) <= move).sum())


def e2e():
    rng = np.random.default_rng(20240607)
    fan = {"conv1.weight": 9, "conv2.weight": C1 * 9, "fc1.weight": C2 * (RES // 4) ** 2, "fc2.weight": F}
    shapes = {"conv1.weight": (C1, 1, 3, 3), "conv1.bias": (C1,), "conv2.weight": (C2, C1, 3, 3),
              "conv2.bias": (C2,), "fc1.weight": (F, C2 * (RES // 4) ** 2), "fc1.bias": (F,),
              "fc2.weight": (K, F), "fc2.bias": (K,)}
    params = {}
    for name in PARAM_NAMES:
        bound = np.sqrt(6.0 / fan[name]) if name in fan else 0.1
        params[name] = rng.uniform(-bound, bound, size=shapes[name]).astype(np.float32)
    test_u8, test_lab = make_images(rng, 480, 200, 256, 60)
    gen_u8, gen_lab = make_images(rng, 120, 120, 256, 60)  # dimmer blocks: precision well below recall
    ft, eft, zt, ezt = forward(params, test_u8)
    fg, efg, zg, ezg = forward(params, gen_u8)
    f = fid(fg, ft)
    npr = min(len(fg), len(ft))
    p, r = precision_recall(ft[:npr], fg, 3)
    p_tol = pr_uncertain(fg, efg, ft[:npr], eft[:npr], 3) / len(fg)
    r_tol = pr_uncertain(ft[:npr], eft[:npr], fg, efg, 3) / npr
    assert abs(p - r) > 2 * (p_tol + r_tol), "precision %g and recall %g too close to catch swapped arguments" % (p, r)
    p_all, r_all = precision_recall(ft, fg, 3)  # against the whole test split: must be told apart
    assert abs(p_all - p) > 2 * p_tol or abs(r_all - r) > 2 * r_tol, (p_all, r_all, p, r)
    prob = np.exp(zg - zg.max(1, keepdims=True))
    prob /= prob.sum(1, keepdims=True)
    top = np.sort(zg, axis=1)
    assert (top[:, -1] - top[:, -2] > 2 * ezg.max(1)).all(), "an argmax lies within the float32 error"
    f_part = fid(fg, ft[:npr])  # FID against part of the test split: must be told apart
    tol = gauss_w2_tol(fg, efg, ft, eft, f)
    assert abs(f_part - f) > 2 * tol, (f_part, f, tol)
    pred = prob.argmax(1)
    conf = float(prob.max(1).mean())
    conf_tol = float((0.5 * ezg.max(1)).mean() + 8 * U32)
    hist = np.bincount(pred, minlength=K) / len(pred)
    ent = float(-(hist[hist > 0] * np.log2(hist[hist > 0])).sum())
    acc = float((pred == gen_lab).mean())
    cfg = ("fid=%.17g\nfid_tol=%.17g\nprecision=%.17g\nprecision_tol=%.17g\nrecall=%.17g\nrecall_tol=%.17g\nconfidence=%.17g\nconfidence_tol=%.17g\n"
           "class_entropy=%.17g\nlabel_accuracy=%.17g\nn_pr=%d\nk=3\nres=%d\nnum_classes=%d\nfeat_err=%.17g\n"
           % (f, tol, p, p_tol, r, r_tol, conf, conf_tol, ent, acc, npr, RES, K, np.sqrt((efg[0] ** 2).sum())))
    entries = [("config", cfg)] + [("clf." + k, params[k]) for k in PARAM_NAMES]
    entries += [("test.images", test_u8), ("test.labels", test_lab), ("gen.images", gen_u8), ("gen.labels", gen_lab)]
    entries += [("gen.feats", fg[:8])]
    write_fixture(OUT_E2E, entries)
    sys.stdout.write("wrote %s\n%s(FID against the first %d test images: %g; precision/recall against all: %g, %g)\n"
                     % (os.path.normpath(OUT_E2E), cfg, npr, f_part, p_all, r_all))


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
    e2e()


if __name__ == "__main__":
    main()
