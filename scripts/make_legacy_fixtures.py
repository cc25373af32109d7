#!/usr/bin/python3
"""make_legacy_fixtures.py: the checkpoint fixtures of tests/test_legacy_ckpt.c.

Writes tests/data/legacy/*.safetensors (tiny models, each < 300 KB) and
tests/data/expected/*.idx (what `ddpm sample` made of them when they were
written), and prints every command it runs. tests/data/legacy/README.md lists
the files; rerun this only to add fixtures on purpose: the committed files pin
the behaviour of the code that wrote them, and a regenerated set pins
whatever the code does now.

    /usr/bin/python3 scripts/make_legacy_fixtures.py [--ddpm build/ddpm]
        [--data-dir ../shared/mnist] [--out tests/data]

Run it from the repository root (the stored 'data' metadata is the
--data-dir as given). Checkpoints:
    ckpt_v            `ddpm train` with today's defaults (v-objective, min-SNR 5)
    ckpt_eps_noobj    --objective eps --snr-gamma 0, then the metadata keys
                      'objective' and 'snr_gamma' removed (rewrite_metadata):
                      a checkpoint from before the objective option
    ckpt_cond         --classes 10 (for guidance)
    torch_nometa      DDPMUNet of scripts/torch_reference.py (PyTorch's init,
                      torch.manual_seed(TORCH_SEED)) with only the metadata the
                      reader needs: 'format' and the nine model-config keys
Needs torch and numpy for torch_nometa only (torch_reference.py); the
metadata rewrite is json + struct.
"""
import argparse
import json
import os
import shlex
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# The tiny model: 2 levels, 1 ResBlock, attention at 14x14, T = 50;
# 11621 parameters, so a checkpoint with EMA and Adam state is ~230 KB.
MODEL = ["--ch", "4", "--ch-mult", "1,2", "--res-blocks", "1", "--attn", "14", "--groups", "2"]
TRAIN = ["--iters", "3", "--batch", "4", "--steps", "50", "--threads", "1", "--seed", "1"]
CKPTS = {
    "ckpt_v": [],
    "ckpt_eps_noobj": ["--objective", "eps", "--snr-gamma", "0"],
    "ckpt_cond": ["--classes", "10"],
}
DROP_KEYS = {"ckpt_eps_noobj": ["objective", "snr_gamma"]}
TORCH_SEED = 7
TORCH_CONFIG = dict(in_ch=1, res=28, ch=4, ch_mult=(1, 2), num_res_blocks=1, attn_res=(14,),
                    groups=2, dropout=0.0, num_classes=0)
MAX_CKPT_BYTES = 300 * 1024

# expected file -> (checkpoint, sample flags after BASE_SAMPLE); the same
# table is in tests/test_legacy_ckpt.c
BASE_SAMPLE = ["-n", "4", "--seed", "5"]
DDIM6 = ["--sampler", "ddim", "--sample-steps", "6"]
EXPECTED = {
    "ckpt_v.ddim6.idx": ("ckpt_v", DDIM6),
    "ckpt_v.ddpm10.idx": ("ckpt_v", ["--sampler", "ddpm", "--sample-steps", "10"]),
    "ckpt_v.ddim6.no_ema.idx": ("ckpt_v", DDIM6 + ["--no-ema"]),
    "ckpt_eps_noobj.ddim6.idx": ("ckpt_eps_noobj", DDIM6),
    "ckpt_cond.ddim6.idx": ("ckpt_cond", DDIM6),
    "ckpt_cond.ddim6.guidance2.idx": ("ckpt_cond", DDIM6 + ["--guidance", "2"]),
    "torch_nometa.ddim6.idx": ("torch_nometa", DDIM6),
}


def run(cmd):
    print("$ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        sys.exit("failed (exit %d):\n%s%s" % (r.returncode, r.stdout, r.stderr))
    return r


def read_header(path):
    """(header dict with '__metadata__', the raw data bytes after the header)."""
    with open(path, "rb") as f:
        b = f.read()
    (hlen,) = struct.unpack_from("<Q", b, 0)
    return json.loads(b[8:8 + hlen].decode("utf-8")), b[8 + hlen:]


def rewrite_metadata(path, drop=(), put=None):
    """Removes the metadata keys `drop` and sets those of `put` in a
    safetensors file, in place (atomically). Tensor entries, their order and
    the data bytes are unchanged: the data offsets are relative to the end of
    the header. The header is padded with spaces to a multiple of 8 bytes."""
    header, data = read_header(path)
    meta = header.get("__metadata__", {})
    for k in drop:
        if k not in meta:
            raise KeyError("%s: metadata has no '%s'" % (path, k))
        del meta[k]
    meta.update(put or {})
    header["__metadata__"] = meta  # stays the first key
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)
    os.replace(path + ".tmp", path)


def train(ddpm, data_dir, name, extra, legacy_dir, tmp):
    run_dir = os.path.join(tmp, name)
    run([ddpm, "train", "--data", "mnist", "--data-dir", data_dir] + TRAIN + MODEL + extra +
        ["-o", run_dir, "--force"])
    dst = os.path.join(legacy_dir, name + ".safetensors")
    os.replace(os.path.join(run_dir, "ckpt.safetensors"), dst)
    if name in DROP_KEYS:
        rewrite_metadata(dst, drop=DROP_KEYS[name])
        print("removed metadata %s from %s" % (", ".join(DROP_KEYS[name]), dst))


def write_torch(legacy_dir):
    sys.path.insert(0, HERE)
    import torch
    import torch_reference as tr
    torch.manual_seed(TORCH_SEED)
    model = tr.DDPMUNet(**TORCH_CONFIG)
    meta = dict(format="ddpm", **tr.config_to_strings(TORCH_CONFIG))
    dst = os.path.join(legacy_dir, "torch_nometa.safetensors")
    tr.write_safetensors(dst, model.state_dict(), meta)
    print("wrote %s: %d parameters, metadata %s" % (dst, tr.count_params(model), sorted(meta)))


def sample(ddpm, ckpt, flags, idx, tmp):
    """Returns the IDX bytes; checks they do not depend on --threads."""
    outs = []
    for threads in ([], ["--threads", "1"], ["--threads", "2"]):
        dst = idx if not threads else os.path.join(tmp, "threads.idx")
        run([ddpm, "sample", "-c", ckpt] + BASE_SAMPLE + flags + threads +
            ["--idx", dst, "-o", os.path.join(tmp, "x.png")])
        with open(dst, "rb") as f:
            outs.append(f.read())
    if any(o != outs[0] for o in outs):
        sys.exit("%s %s: the output depends on --threads" % (ckpt, " ".join(flags)))
    return outs[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ddpm", default="build/ddpm", help="the ddpm binary (default build/ddpm)")
    ap.add_argument("--data-dir", default="../shared/mnist", help="MNIST (default ../shared/mnist)")
    ap.add_argument("--out", default="tests/data", help="tests/data (default)")
    ap.add_argument("--tmp", default="/tmp/ddpm_legacy_fixtures", help="scratch directory")
    args = ap.parse_args()
    legacy, expected = os.path.join(args.out, "legacy"), os.path.join(args.out, "expected")
    for d in (legacy, expected, args.tmp):
        os.makedirs(d, exist_ok=True)
    for name, extra in CKPTS.items():
        train(args.ddpm, args.data_dir, name, extra, legacy, args.tmp)
    write_torch(legacy)
    for name in list(CKPTS) + ["torch_nometa"]:
        path = os.path.join(legacy, name + ".safetensors")
        size = os.path.getsize(path)
        meta = read_header(path)[0]["__metadata__"]
        print("%s: %d bytes; metadata keys: %s" % (path, size, ", ".join(meta)))
        assert size < MAX_CKPT_BYTES, size
    seen = {}
    for fname, (ck, flags) in EXPECTED.items():
        idx = os.path.join(expected, fname)
        b = sample(args.ddpm, os.path.join(legacy, ck + ".safetensors"), flags, idx, args.tmp)
        if b in seen.values():  # every expected file must tell its case apart
            sys.exit("%s is identical to %s" % (fname, [k for k, v in seen.items() if v == b]))
        seen[fname] = b
        print("wrote %s: %d bytes" % (idx, len(b)))


if __name__ == "__main__":
    main()
