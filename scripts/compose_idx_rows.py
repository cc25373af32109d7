#!/usr/bin/python3
"""compose_idx_rows.py OUT.png SCALE ROWS...: a PNG of rows of 28x28 gray IDX images, each row
'file.idx:i0,i1,...' (or 'file.idx:mask:i0,...': those images with the lower half painted dark grey,
as the inpainting figure shows its input); tiles scaled SCALE times, 2 px grey padding. Used for the
figures of results/editing_2026-12-06.md. Run with /usr/bin/python3."""
import struct, sys, zlib
import numpy as np

def idx(path):
    b = open(path, 'rb').read()
    magic, n = struct.unpack('>II', b[:8])
    nd = magic & 0xff
    dims = struct.unpack('>' + 'I' * nd, b[4:4 + 4 * nd])
    return np.frombuffer(b[4 + 4 * nd:], np.uint8).reshape(dims[0], 28, 28)

def png(path, a):
    h, w = a.shape
    raw = b''.join(b'\x00' + a[y].tobytes() for y in range(h))
    def ch(t, d):
        return struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)
    open(path, 'wb').write(b'\x89PNG\r\n\x1a\n' + ch(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 0, 0, 0, 0)) +
                           ch(b'IDAT', zlib.compress(raw, 9)) + ch(b'IEND', b''))

out, S = sys.argv[1], int(sys.argv[2])
rows = []
for spec in sys.argv[3:]:
    f, sel = spec.split(':', 1)
    im = idx(f)
    if sel.startswith('mask'):
        ids = [int(v) for v in sel[5:].split(',')]
        t = im[ids].copy()
        t[:, 14:, :] = 60
    else:
        t = im[[int(v) for v in sel.split(',')]]
    rows.append(t)
C = max(len(r) for r in rows)
P, tile = 2, 28 * S
H, W = len(rows) * (tile + P) + P, C * (tile + P) + P
a = np.full((H, W), 128, np.uint8)
for r, row in enumerate(rows):
    for c, t in enumerate(row):
        y, x = P + r * (tile + P), P + c * (tile + P)
        a[y:y + tile, x:x + tile] = np.kron(t, np.ones((S, S), np.uint8))
png(out, a)
