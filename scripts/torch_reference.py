#!/usr/bin/python3
"""torch_reference.py: the PyTorch reference of ddpm's UNet (docs/design.md §4).

The module's state_dict keys are the tensor names of ddpm's checkpoints, so a
checkpoint written by the C program loads straight into DDPMUNet and back.

    /usr/bin/python3 scripts/torch_reference.py                    # write tests/data/*.fix
    /usr/bin/python3 scripts/torch_reference.py --conv             # only tests/data/conv_shapes.fix
    /usr/bin/python3 scripts/torch_reference.py --default-shape    # only tests/data/unet_default_shape.fix
    /usr/bin/python3 scripts/torch_reference.py --count            # parameter counts
    /usr/bin/python3 scripts/torch_reference.py --load ck.safetensors [--ema]
    /usr/bin/python3 scripts/torch_reference.py --save-init init.safetensors

Fixture format (little-endian), version 1, read by tests/fixture.c:
    8 bytes magic "DDPMFIX\\0"; u32 version; u32 count; then count entries:
    u16 name_len; name (no NUL); u8 dtype (0 f32, 1 i32, 2 utf-8 text);
    u8 ndim (<= 8); u32 dims[ndim]; data (prod(dims) elements, 4 bytes each
    for f32/i32, 1 byte each for text).
Entries: "config" (text, "key=value\\n" lines), "x", "t", ["labels"], "noise",
"out", "loss" (= mse_loss(out, noise), mean), then "param.K" and "grad.K" for
every state_dict key K in order, then "grad_input.x". The reference runs in
float64 on float32-representable parameters and inputs; results are stored as
float32.

Needs only torch and numpy (no safetensors package: the format is read and
written here with json + struct).
"""
import argparse
import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DEFAULT_CONFIG = dict(in_ch=1, res=28, ch=32, ch_mult=(1, 2, 2), num_res_blocks=2,
                      attn_res=(7,), groups=8, dropout=0.0, num_classes=0)
DEFAULT_PARAM_COUNT = 1623169


# ---- the model ------------------------------------------------------------

def timestep_embedding(t, dim):
    """t (N,) integers -> (N, dim) = [sin(t f_i), cos(t f_i)], f_i = exp(-ln(1e4) i/(dim/2))."""
    assert dim % 2 == 0
    half = dim // 2
    i = torch.arange(half, dtype=torch.float64)
    freqs = torch.exp(-math.log(10000.0) * i / half)
    args = t.to(torch.float64)[:, None] * freqs[None, :]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)  # float64; caller casts


class ResBlock(nn.Module):
    def __init__(self, cin, cout, temb_ch, groups, dropout):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=1e-5)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.temb_proj = nn.Linear(temb_ch, cout)
        self.norm2 = nn.GroupNorm(groups, cout, eps=1e-5)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        if cin != cout:
            self.nin_shortcut = nn.Conv2d(cin, cout, 1)

    def forward(self, x, temb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.temb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        skip = self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x
        return skip + h


class AttnBlock(nn.Module):
    def __init__(self, C, groups):
        super().__init__()
        self.norm = nn.GroupNorm(groups, C, eps=1e-5)
        self.qkv = nn.Conv2d(C, 3 * C, 1)
        self.proj_out = nn.Conv2d(C, C, 1)

    def forward(self, x):
        N, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).chunk(3, dim=1)
        q = q.reshape(N, C, H * W)
        k = k.reshape(N, C, H * W)
        v = v.reshape(N, C, H * W)
        w = torch.bmm(q.transpose(1, 2), k) / math.sqrt(C)  # (N, T_i, T_j)
        w = torch.softmax(w, dim=2)
        h = torch.bmm(v, w.transpose(1, 2))  # h[c,i] = sum_j v[c,j] w[i,j]
        return x + self.proj_out(h.reshape(N, C, H, W))


class DDPMUNet(nn.Module):
    def __init__(self, in_ch=1, res=28, ch=32, ch_mult=(1, 2, 2), num_res_blocks=2,
                 attn_res=(7,), groups=8, dropout=0.0, num_classes=0):
        super().__init__()
        self.in_ch, self.res, self.ch = in_ch, res, ch
        self.ch_mult, self.num_res_blocks = tuple(ch_mult), num_res_blocks
        self.attn_res, self.groups = tuple(attn_res), groups
        self.dropout_p, self.num_classes = dropout, num_classes
        nlev = len(ch_mult)
        tch = 4 * ch

        self.temb = nn.Module()
        self.temb.dense = nn.ModuleList([nn.Linear(ch, tch), nn.Linear(tch, tch)])
        if num_classes > 0:
            self.label_emb = nn.Embedding(num_classes + 1, tch)  # row num_classes = "no label"
        self.conv_in = nn.Conv2d(in_ch, ch, 3, padding=1)

        # down path; skip_ch mirrors the skip stack's channel counts
        skip_ch = [ch]
        cur, r = ch, res
        self.down = nn.ModuleList()
        for i in range(nlev):
            out = ch * ch_mult[i]
            m = nn.Module()
            m.block = nn.ModuleList()
            m.attn = nn.ModuleList()
            for _ in range(num_res_blocks):
                m.block.append(ResBlock(cur, out, tch, groups, dropout))
                cur = out
                if r in self.attn_res:
                    m.attn.append(AttnBlock(cur, groups))
                skip_ch.append(cur)
            if i != nlev - 1:
                m.downsample = nn.Module()
                m.downsample.conv = nn.Conv2d(cur, cur, 3, stride=2, padding=1)
                skip_ch.append(cur)
                r = (r + 1) // 2  # 3x3 stride 2 pad 1
            self.down.append(m)

        self.mid = nn.Module()
        self.mid.block_1 = ResBlock(cur, cur, tch, groups, dropout)
        self.mid.attn_1 = AttnBlock(cur, groups)
        self.mid.block_2 = ResBlock(cur, cur, tch, groups, dropout)

        # up path: built in reverse level order, inserted at 0 so up[i] is level i
        self.up = nn.ModuleList()
        for i in reversed(range(nlev)):
            out = ch * ch_mult[i]
            m = nn.Module()
            m.block = nn.ModuleList()
            m.attn = nn.ModuleList()
            for _ in range(num_res_blocks + 1):
                m.block.append(ResBlock(cur + skip_ch.pop(), out, tch, groups, dropout))
                cur = out
                if r in self.attn_res:
                    m.attn.append(AttnBlock(cur, groups))
            if i != 0:
                m.upsample = nn.Module()
                m.upsample.conv = nn.Conv2d(cur, cur, 3, padding=1)
                r = r * 2
            self.up.insert(0, m)
        assert not skip_ch

        self.norm_out = nn.GroupNorm(groups, ch, eps=1e-5)
        self.conv_out = nn.Conv2d(ch, in_ch, 3, padding=1)

    def forward(self, x, t, labels=None):
        nlev = len(self.ch_mult)
        emb = timestep_embedding(t, self.ch).to(x.dtype)
        temb = self.temb.dense[1](F.silu(self.temb.dense[0](emb)))
        if self.num_classes > 0:
            if labels is None:
                labels = torch.full((x.shape[0],), self.num_classes, dtype=torch.long)
            temb = temb + self.label_emb(labels.long())

        hs = [self.conv_in(x)]
        for i in range(nlev):
            m = self.down[i]
            for j in range(self.num_res_blocks):
                h = m.block[j](hs[-1], temb)
                if len(m.attn) > 0:
                    h = m.attn[j](h)
                hs.append(h)
            if i != nlev - 1:
                hs.append(m.downsample.conv(hs[-1]))

        h = hs[-1]
        h = self.mid.block_1(h, temb)
        h = self.mid.attn_1(h)
        h = self.mid.block_2(h, temb)

        for i in reversed(range(nlev)):
            m = self.up[i]
            for j in range(self.num_res_blocks + 1):
                h = m.block[j](torch.cat([h, hs.pop()], dim=1), temb)
                if len(m.attn) > 0:
                    h = m.attn[j](h)
            if i != 0:
                h = m.upsample.conv(F.interpolate(h, scale_factor=2, mode="nearest"))
        assert not hs

        return self.conv_out(F.silu(self.norm_out(h)))


def count_params(model):
    return sum(p.numel() for p in model.parameters())


# ---- config <-> text ------------------------------------------------------

CONFIG_KEYS = ["in_ch", "res", "ch", "ch_mult", "num_res_blocks", "attn_res", "groups",
               "dropout", "num_classes"]


def config_to_strings(cfg):
    out = {}
    for k in CONFIG_KEYS:
        v = cfg[k]
        if k in ("ch_mult", "attn_res"):
            out[k] = ",".join(str(int(a)) for a in v)
        elif k == "dropout":
            out[k] = repr(float(v))
        else:
            out[k] = str(int(v))
    return out


def config_from_strings(meta):
    cfg = dict(DEFAULT_CONFIG)
    for k in CONFIG_KEYS:
        if k not in meta:
            raise ValueError("metadata has no '%s'" % k)
        s = meta[k].strip()
        if k in ("ch_mult", "attn_res"):
            cfg[k] = tuple(int(a) for a in s.split(",") if a.strip() != "")
        elif k == "dropout":
            cfg[k] = float(s)
        else:
            cfg[k] = int(s)
    return cfg


# ---- fixtures -------------------------------------------------------------

FIX_MAGIC = b"DDPMFIX\0"
FIX_VERSION = 1
DT_F32, DT_I32, DT_TEXT = 0, 1, 2


def _entry_bytes(name, dtype, dims, payload):
    nb = name.encode("utf-8")
    assert 0 < len(nb) < 65536 and len(dims) <= 8
    b = struct.pack("<H", len(nb)) + nb + struct.pack("<BB", dtype, len(dims))
    b += b"".join(struct.pack("<I", int(d)) for d in dims)
    return b + payload


def write_fixture(path, entries):
    """entries: list of (name, value); value is str (text), or a tensor/array (f32 or i32)."""
    chunks = []
    for name, v in entries:
        if isinstance(v, str):
            data = v.encode("utf-8")
            chunks.append(_entry_bytes(name, DT_TEXT, [len(data)], data))
            continue
        a = v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
        if a.dtype.kind in "iu":
            a32 = a.astype("<i4")
            assert np.array_equal(a32, a)
            dt = DT_I32
        else:
            a32 = a.astype("<f4")
            assert np.all(np.isfinite(a32)), name
            dt = DT_F32
        chunks.append(_entry_bytes(name, dt, a.shape, np.ascontiguousarray(a32).tobytes()))
    with open(path + ".tmp", "wb") as f:
        f.write(FIX_MAGIC + struct.pack("<II", FIX_VERSION, len(chunks)))
        for c in chunks:
            f.write(c)
    os.replace(path + ".tmp", path)


def read_fixture(path):
    """Returns an ordered dict name -> str or numpy array (for self-checks)."""
    with open(path, "rb") as f:
        b = f.read()
    if b[:8] != FIX_MAGIC:
        raise ValueError("%s: bad magic" % path)
    version, count = struct.unpack_from("<II", b, 8)
    if version != FIX_VERSION:
        raise ValueError("%s: unsupported version %d" % (path, version))
    off, out = 16, {}
    for _ in range(count):
        (nl,) = struct.unpack_from("<H", b, off)
        off += 2
        name = b[off:off + nl].decode("utf-8")
        off += nl
        dt, nd = struct.unpack_from("<BB", b, off)
        off += 2
        dims = struct.unpack_from("<%dI" % nd, b, off)
        off += 4 * nd
        n = int(np.prod(dims)) if nd else 1
        if dt == DT_TEXT:
            out[name] = b[off:off + n].decode("utf-8")
            off += n
        else:
            a = np.frombuffer(b, dtype="<f4" if dt == DT_F32 else "<i4", count=n, offset=off)
            out[name] = a.reshape(dims)
            off += 4 * n
    if off != len(b):
        raise ValueError("%s: %d trailing bytes" % (path, len(b) - off))
    return out


def randomize_groupnorm(model, gen):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.GroupNorm):
                m.weight.copy_(1 + 0.1 * torch.randn(m.weight.shape, generator=gen))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))


def make_fixture(path, cfg, seed, t, labels=None):
    assert cfg["dropout"] == 0.0
    torch.manual_seed(seed)
    model = DDPMUNet(**cfg)  # float32, PyTorch's default init
    gen = torch.Generator().manual_seed(seed + 1)
    randomize_groupnorm(model, gen)
    N = len(t)
    shape = (N, cfg["in_ch"], cfg["res"], cfg["res"])
    x32 = torch.randn(shape, generator=gen)
    noise32 = torch.randn(shape, generator=gen)
    params32 = {k: v.detach().clone() for k, v in model.state_dict().items()}

    # float64 reference on the exactly float32-representable values
    model = model.double().eval()
    x = x32.double().requires_grad_(True)
    noise = noise32.double()
    tt = torch.tensor(t, dtype=torch.long)
    lab = torch.tensor(labels, dtype=torch.long) if labels is not None else None
    out = model(x, tt, lab)
    loss = F.mse_loss(out, noise)
    model.zero_grad()
    loss.backward()

    text = "".join("%s=%s\n" % kv for kv in config_to_strings(cfg).items())
    entries = [("config", text), ("x", x32), ("t", np.asarray(t, dtype=np.int32))]
    if labels is not None:
        entries.append(("labels", np.asarray(labels, dtype=np.int32)))
    entries += [("noise", noise32), ("out", out.detach()), ("loss", loss.detach().reshape(1))]
    named = dict(model.named_parameters())
    sd = model.state_dict()
    for k in sd:
        assert torch.equal(sd[k], params32[k].double())
        entries.append(("param." + k, params32[k]))
        g = named[k].grad
        assert g is not None and torch.count_nonzero(g) > 0, k
        entries.append(("grad." + k, g))
    entries.append(("grad_input.x", x.grad))
    write_fixture(path, entries)

    # self-check: the file decodes back to what was written
    back = read_fixture(path)
    assert back["config"] == text
    assert np.array_equal(back["x"], x32.numpy())
    for k in sd:
        assert np.array_equal(back["param." + k], params32[k].numpy())
    nparam = count_params(model)
    print("wrote %s: %d bytes, %d entries, %d parameters, loss=%.9g" %
          (path, os.path.getsize(path), len(back), nparam, loss.item()))
    return os.path.getsize(path)


TINY = dict(in_ch=1, res=16, ch=8, ch_mult=(1, 2), num_res_blocks=1, attn_res=(8,),
            groups=4, dropout=0.0, num_classes=0)
TINY_COND = dict(in_ch=3, res=8, ch=8, ch_mult=(1, 2), num_res_blocks=1, attn_res=(4,),
                 groups=2, dropout=0.0, num_classes=3)


# The default model's structure (DEFAULT_CONFIG: 3 levels, 2 ResBlocks per
# level, attention at 7x7, the 28x28 input) at a quarter of its width, so the
# fixture stays under 1.5 MB; every other fixture has 2 levels of 1 block.
DEFAULT_SHAPE = dict(DEFAULT_CONFIG, ch=8, groups=4)
DEFAULT_SHAPE_MAX_BYTES = 1536 * 1024


def write_default_shape_fixture(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    size = make_fixture(os.path.join(out_dir, "unet_default_shape.fix"), DEFAULT_SHAPE, seed=2718,
                        t=[17, 640])
    assert size < DEFAULT_SHAPE_MAX_BYTES, size


def write_fixtures(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    total = make_fixture(os.path.join(out_dir, "unet_tiny.fix"), TINY, seed=1234, t=[3, 917])
    total += make_fixture(os.path.join(out_dir, "unet_tiny_cond.fix"), TINY_COND, seed=4321,
                          t=[0, 451, 999], labels=[2, 3, 0])  # 3 = "no label"
    assert total < 2 * 1024 * 1024, total
    write_default_shape_fixture(out_dir)


# ---- conv-only fixture ----------------------------------------------------------

CONV_DESC_RE = (r"\{\s*\.N = (\d+), \.C = (\d+), \.H = (\d+), \.W = (\d+), \.F = (\d+), "
                r"\.K = (\d+), \.S = (\d+), \.P = (\d+)")
CONV_SAMPLES = 256


def conv_gen(seed, n):
    """n values k/1024, k in [-512, 512], from an integer hash of (seed, i):
    exactly representable in float32, so C (tests/test_conv.c, conv_gen)
    makes the same inputs bit for bit."""
    i = np.arange(n, dtype=np.uint64)
    m = np.uint64(0xFFFFFFFF)
    h = (i * np.uint64(2654435761) + np.uint64(seed) * np.uint64(97531)) & m
    h ^= h >> np.uint64(15)
    h = (h * np.uint64(2246822519)) & m
    h ^= h >> np.uint64(13)
    k = ((h >> np.uint64(8)) % np.uint64(1025)).astype(np.int64) - 512
    return k.astype(np.float64) / 1024.0


def conv_descs(test_conv_c):
    """Every conv descriptor written as {.N = .., .C = .., ...} in tests/test_conv.c."""
    import re
    with open(test_conv_c) as f:
        src = f.read()
    seen = []
    for m in re.finditer(CONV_DESC_RE, src):
        d = tuple(int(v) for v in m.groups())
        if d not in seen:
            seen.append(d)
    return seen


def write_conv_fixture(path, test_conv_c):
    """For each descriptor (N, C, H, W, F, K, S, P) of tests/test_conv.c: the
    float64 F.conv2d of in = conv_gen(1), weight = conv_gen(2), bias =
    conv_gen(3), at every stride-th output element (stride = ceil(numel /
    256)): entry "conv.N,C,H,W,F,K,S,P" (f32, the sampled outputs)."""
    entries = []
    for (N, C, H, W, Fo, K, S, P) in conv_descs(test_conv_c):
        x = torch.from_numpy(conv_gen(1, N * C * H * W).reshape(N, C, H, W))
        w = torch.from_numpy(conv_gen(2, Fo * C * K * K).reshape(Fo, C, K, K))
        b = torch.from_numpy(conv_gen(3, Fo))
        out = F.conv2d(x, w, b, stride=S, padding=P).reshape(-1)
        stride = -(-out.numel() // CONV_SAMPLES)
        entries.append(("conv.%d,%d,%d,%d,%d,%d,%d,%d" % (N, C, H, W, Fo, K, S, P), out[::stride]))
    write_fixture(path, entries)
    size = os.path.getsize(path)
    print("wrote %s: %d bytes, %d conv shapes" % (path, size, len(entries)))
    assert size < 1024 * 1024, size


# ---- safetensors (json + struct) ---------------------------------------------

ST_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4",
             "I16": "<i2", "I8": "i1", "U8": "u1", "U16": "<u2", "U32": "<u4", "U64": "<u8",
             "BOOL": "?"}


def read_safetensors(path):
    """Returns (tensors: name -> numpy array, metadata: dict of str)."""
    with open(path, "rb") as f:
        b = f.read()
    if len(b) < 8:
        raise ValueError("%s: too short for safetensors" % path)
    (hlen,) = struct.unpack_from("<Q", b, 0)
    if 8 + hlen > len(b):
        raise ValueError("%s: header length %d exceeds file size" % (path, hlen))
    header = json.loads(b[8:8 + hlen].decode("utf-8"))
    meta = header.pop("__metadata__", {}) or {}
    base = 8 + hlen
    tensors = {}
    for name, info in header.items():
        dt = info["dtype"]
        if dt not in ST_DTYPES:
            tensors[name] = None  # unsupported dtype (e.g. BF16): only matters if we need it
            continue
        s, e = info["data_offsets"]
        if not (0 <= s <= e and base + e <= len(b)):
            raise ValueError("%s: tensor '%s' data out of range" % (path, name))
        a = np.frombuffer(b[base + s:base + e], dtype=ST_DTYPES[dt])
        shape = tuple(info["shape"])
        if a.size != (int(np.prod(shape)) if shape else 1):
            raise ValueError("%s: tensor '%s' size does not match its shape" % (path, name))
        tensors[name] = a.reshape(shape)
    return tensors, meta


def write_safetensors(path, tensors, metadata):
    header = {"__metadata__": {k: str(v) for k, v in metadata.items()}}
    blobs, off = [], 0
    for name, t in tensors.items():
        a = np.ascontiguousarray(t.detach().cpu().numpy().astype("<f4"))
        raw = a.tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for raw in blobs:
            f.write(raw)
    os.replace(path + ".tmp", path)


# ---- commands ---------------------------------------------------------------

def cmd_count():
    model = DDPMUNet(**DEFAULT_CONFIG)
    groups = {}
    for k, p in model.named_parameters():
        parts = k.split(".")
        if parts[0] in ("down", "up"):
            key = ".".join(parts[:4]) if parts[2] in ("block", "attn") else ".".join(parts[:3])
        elif parts[0] == "mid":
            key = ".".join(parts[:2])
        else:
            key = parts[0]
        groups[key] = groups.get(key, 0) + p.numel()
    for k, n in groups.items():
        print("%-24s %9d" % (k, n))
    total = count_params(model)
    print("total %d parameters (%d tensors)" % (total, len(model.state_dict())))
    assert total == DEFAULT_PARAM_COUNT, "expected %d" % DEFAULT_PARAM_COUNT


def cmd_load(path, ema):
    tensors, meta = read_safetensors(path)
    cfg = config_from_strings(meta)
    model = DDPMUNet(**cfg)
    tops = {name for name, _ in model.named_children()}
    sd, ignored = {}, {}
    for name, a in tensors.items():
        if ema:
            take = name.startswith("ema.")
            key = name[4:]
        else:
            take = name.split(".", 1)[0] in tops
            key = name
        if not take:
            pre = name.split(".", 1)[0] + "." if "." in name else name
            if pre[:-1] in tops:
                pre = "(model) "
            ignored[pre] = ignored.get(pre, 0) + 1
            continue
        if a is None:
            raise ValueError("%s: tensor '%s' has an unsupported dtype" % (path, name))
        sd[key] = torch.from_numpy(a.astype(np.float32))
    model.load_state_dict(sd, strict=True)
    print("loaded %s: %d parameters%s" % (path, count_params(model), " (ema)" if ema else ""))
    print("config: " + " ".join("%s=%s" % kv for kv in config_to_strings(cfg).items()))
    if ignored:
        print("ignored: " + ", ".join("%s* (%d)" % kv for kv in sorted(ignored.items())))
    model.eval()
    g = torch.Generator().manual_seed(0)
    N = 2
    x = torch.randn((N, cfg["in_ch"], cfg["res"], cfg["res"]), generator=g)
    t = torch.randint(0, 1000, (N,), generator=g)
    labels = None
    if cfg["num_classes"] > 0:
        labels = torch.randint(0, cfg["num_classes"] + 1, (N,), generator=g)
    with torch.no_grad():
        out = model(x, t, labels)
    print("forward: out shape %s, mean %.6g, std %.6g, finite %s" %
          (tuple(out.shape), out.mean().item(), out.std().item(), bool(torch.isfinite(out).all())))
    if not torch.isfinite(out).all():
        sys.exit(1)


def cmd_save_init(path, seed):
    torch.manual_seed(seed)
    model = DDPMUNet(**DEFAULT_CONFIG)
    write_safetensors(path, model.state_dict(), config_to_strings(DEFAULT_CONFIG))
    print("wrote %s: %d parameters" % (path, count_params(model)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out-dir", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                      "..", "tests", "data"),
                    help="where to write the fixtures (default tests/data)")
    ap.add_argument("--count", action="store_true", help="print the default model's parameter counts")
    ap.add_argument("--load", metavar="FILE", help="load a ddpm safetensors checkpoint")
    ap.add_argument("--ema", action="store_true", help="with --load: use the ema. weights")
    ap.add_argument("--save-init", metavar="FILE", help="write the initialised default model")
    ap.add_argument("--seed", type=int, default=0, help="seed for --save-init")
    ap.add_argument("--conv", action="store_true",
                    help="write only tests/data/conv_shapes.fix (every conv shape of tests/test_conv.c)")
    ap.add_argument("--default-shape", action="store_true",
                    help="write only tests/data/unet_default_shape.fix (the default model's structure, ch 8)")
    args = ap.parse_args()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    if args.ema and not args.load:
        ap.error("--ema needs --load")
    if args.count:
        cmd_count()
    elif args.load:
        cmd_load(args.load, args.ema)
    elif args.save_init:
        cmd_save_init(args.save_init, args.seed)
    elif args.default_shape:
        write_default_shape_fixture(os.path.normpath(args.out_dir))
    elif args.conv:
        here = os.path.dirname(os.path.abspath(__file__))
        write_conv_fixture(os.path.join(os.path.normpath(args.out_dir), "conv_shapes.fix"),
                           os.path.join(here, "..", "tests", "test_conv.c"))
    else:
        write_fixtures(os.path.normpath(args.out_dir))
        here = os.path.dirname(os.path.abspath(__file__))
        write_conv_fixture(os.path.join(os.path.normpath(args.out_dir), "conv_shapes.fix"),
                           os.path.join(here, "..", "tests", "test_conv.c"))


if __name__ == "__main__":
    main()
