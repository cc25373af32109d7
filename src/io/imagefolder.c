/* imagefolder.c: a folder of image files as a dataset: scanning, decoding,
 * resizing, batches and the class map. See imagefolder.h; the decoded cache
 * is in imagefolder_cache.c.
 *
 * The stb implementations are compiled in src/io/stb_impl.c (stb_image 2.30
 * from third_party/stb, stb_image_resize from libstb-dev), so this file only
 * includes the headers.
 */
#define _XOPEN_SOURCE 700
#include "ddpm/imagefolder.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stb_image.h> /* third_party/stb (2.30), ahead of libstb-dev on the include path */
#include <stb_image_resize.h>

#include "core/util.h"
#include "io/imagefolder_internal.h"

#define PATH_CAP 4096

/* ---- small helpers ------------------------------------------------------------------ */

static char *str_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *str_printf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return NULL;
    char *s = malloc((size_t)n + 1);
    if (!s) return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

ddpm_status folder_skips_add(folder_skips *s, int kind, char *msg) {
    if (!msg) return ddpm_error(DDPM_ERR_NOMEM, "out of memory");
    ddpm_one_line(msg); /* a file name or a decoder's reason can hold anything */
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 16;
        folder_skip *v = realloc(s->v, (size_t)cap * sizeof *v);
        if (!v) {
            free(msg);
            return ddpm_error(DDPM_ERR_NOMEM, "out of memory");
        }
        s->v = v, s->cap = cap;
    }
    s->v[s->n++] = (folder_skip){kind, msg};
    return DDPM_OK;
}

void folder_skips_free(folder_skips *s) {
    for (int i = 0; i < s->n; i++) free(s->v[i].msg);
    free(s->v);
    memset(s, 0, sizeof *s);
}

static const char *const ALPHA_NAMES[] = {"white", "black"};
static const char *const CROP_NAMES[] = {"center", "random"};

int ddpm_alpha_parse(const char *name) {
    return ddpm_enum_lookup("background", ALPHA_NAMES, 0, (int)DDPM_COUNT(ALPHA_NAMES), name);
}
const char *ddpm_alpha_name(ddpm_alpha_mode m) { return ddpm_enum_name(ALPHA_NAMES, (int)DDPM_COUNT(ALPHA_NAMES), m); }
int ddpm_crop_parse(const char *name) { return ddpm_enum_lookup("crop", CROP_NAMES, 0, (int)DDPM_COUNT(CROP_NAMES), name); }
const char *ddpm_crop_name(ddpm_crop_mode m) { return ddpm_enum_name(CROP_NAMES, (int)DDPM_COUNT(CROP_NAMES), m); }

const char *ddpm_skip_kind_name(ddpm_skip_kind k) {
    static const char *const names[DDPM_SKIP_KINDS] = {"not an image", "corrupt", "too large",
                                                       "unreadable", "symlink loop"};
    return (unsigned)k < DDPM_SKIP_KINDS ? names[k] : "?";
}

void ddpm_folder_options_default(ddpm_folder_options *o) {
    memset(o, 0, sizeof *o);
    o->size = 32;
    o->channels = 3;
    o->alpha = DDPM_ALPHA_WHITE;
    o->max_pixels = DDPM_FOLDER_MAX_PIXELS;
}

static int64_t max_pixels(const ddpm_folder_options *o) {
    return o->max_pixels > 0 ? o->max_pixels : DDPM_FOLDER_MAX_PIXELS;
}

/* ---- scanning ------------------------------------------------------------------------ */

typedef struct {
    char *rel;        /* path relative to the root */
    int64_t bytes;
    int64_t mtime_ns;
    int cls;          /* class index or -1 */
} folder_file;

typedef struct {
    const char *root;
    folder_file *files;
    int n, cap;
    char **classes;
    int ncls, ccap;
    struct { dev_t dev; ino_t ino; } *seen;
    int nseen, seencap;
    folder_skips skips; /* found while scanning (loops, unreadable directories) */
} scan_state;

static void scan_free(scan_state *s) {
    for (int i = 0; i < s->n; i++) free(s->files[i].rel);
    free(s->files);
    for (int i = 0; i < s->ncls; i++) free(s->classes[i]);
    free(s->classes);
    free(s->seen);
    folder_skips_free(&s->skips);
    memset(s, 0, sizeof *s);
}

/* Marks directory st as visited; false if it was already. */
static ddpm_status mark_dir(scan_state *s, const struct stat *st, bool *fresh) {
    for (int i = 0; i < s->nseen; i++)
        if (s->seen[i].dev == st->st_dev && s->seen[i].ino == st->st_ino) {
            *fresh = false;
            return DDPM_OK;
        }
    if (!ddpm_grow((void **)&s->seen, &s->seencap, s->nseen + 1, sizeof *s->seen))
        return ddpm_error(DDPM_ERR_NOMEM, "out of memory");
    s->seen[s->nseen].dev = st->st_dev;
    s->seen[s->nseen++].ino = st->st_ino;
    *fresh = true;
    return DDPM_OK;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

ddpm_status ddpm_dir_names(const char *path, char ***names, int *n, int *err) {
    *names = NULL, *n = 0, *err = 0;
    DIR *d = opendir(path);
    if (!d) {
        *err = errno;
        return DDPM_OK;
    }
    int cap = 0;
    struct dirent *de;
    ddpm_status st = DDPM_OK;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char *dup = strdup(de->d_name);
        if (!dup || !ddpm_grow((void **)names, &cap, *n + 1, sizeof **names)) {
            free(dup);
            st = ddpm_error(DDPM_ERR_NOMEM, "out of memory");
            break;
        }
        (*names)[(*n)++] = dup;
    }
    closedir(d);
    if (*n > 1) qsort(*names, (size_t)*n, sizeof **names, cmp_str);
    return st;
}

static ddpm_status add_file(scan_state *s, char *rel, const struct stat *st, int cls) {
    if (s->n >= DDPM_FOLDER_MAX_FILES) {
        free(rel);
        return ddpm_error(DDPM_ERR_ARG, "'%s': more than %d files", s->root, DDPM_FOLDER_MAX_FILES);
    }
    if (!ddpm_grow((void **)&s->files, &s->cap, s->n + 1, sizeof *s->files)) {
        free(rel);
        return ddpm_error(DDPM_ERR_NOMEM, "out of memory");
    }
    int64_t mt = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
    s->files[s->n++] = (folder_file){rel, (int64_t)st->st_size, mt, cls};
    return DDPM_OK;
}

static ddpm_status scan_dir(scan_state *s, const char *rel, int depth, int cls);

/* One directory entry `rel` (relative to the root). */
static ddpm_status scan_entry(scan_state *s, char *rel, int depth, int cls) {
    char full[PATH_CAP];
    if (snprintf(full, sizeof full, "%s/%s", s->root, rel) >= (int)sizeof full) {
        ddpm_status st = folder_skips_add(&s->skips, DDPM_SKIP_UNREADABLE,
                                          str_printf("'%s': path too long", rel));
        free(rel);
        return st;
    }
    struct stat st;
    if (stat(full, &st) != 0) { /* e.g. a dangling symlink */
        ddpm_status r = folder_skips_add(&s->skips, DDPM_SKIP_UNREADABLE,
                                         str_printf("'%s': cannot stat: %s", full, strerror(errno)));
        free(rel);
        return r;
    }
    if (S_ISREG(st.st_mode)) return add_file(s, rel, &st, cls);
    ddpm_status r = DDPM_OK;
    if (!S_ISDIR(st.st_mode)) {
        r = folder_skips_add(&s->skips, DDPM_SKIP_UNREADABLE,
                             str_printf("'%s': not a regular file", full));
    } else {
        bool fresh;
        if ((r = mark_dir(s, &st, &fresh)) == DDPM_OK) {
            if (!fresh)
                r = folder_skips_add(&s->skips, DDPM_SKIP_LOOP,
                                     str_printf("'%s': directory already visited (symlink loop?), skipped", full));
            else if (depth == 0 && !ddpm_grow((void **)&s->classes, &s->ccap, s->ncls + 1, sizeof(char *)))
                r = ddpm_error(DDPM_ERR_NOMEM, "out of memory");
            else {
                if (depth == 0) {
                    cls = s->ncls;
                    s->classes[s->ncls++] = strdup(rel);
                    if (!s->classes[cls]) r = ddpm_error(DDPM_ERR_NOMEM, "out of memory");
                }
                if (r == DDPM_OK) r = scan_dir(s, rel, depth + 1, cls);
            }
        }
    }
    free(rel);
    return r;
}

static ddpm_status scan_dir(scan_state *s, const char *rel, int depth, int cls) {
    char full[PATH_CAP];
    snprintf(full, sizeof full, "%s%s%s", s->root, rel ? "/" : "", rel ? rel : "");
    if (depth > DDPM_FOLDER_MAX_DEPTH)
        return folder_skips_add(&s->skips, DDPM_SKIP_UNREADABLE,
                                str_printf("'%s': nested deeper than %d levels, skipped", full,
                                           DDPM_FOLDER_MAX_DEPTH));
    char **names;
    int n, err;
    ddpm_status st = ddpm_dir_names(full, &names, &n, &err);
    if (st == DDPM_OK && err) {
        if (!rel) return ddpm_error(DDPM_ERR_IO, "cannot open directory '%s': %s", full, strerror(err));
        st = folder_skips_add(&s->skips, DDPM_SKIP_UNREADABLE,
                              str_printf("cannot open directory '%s': %s", full, strerror(err)));
    }
    int i = 0;
    for (; st == DDPM_OK && i < n; i++) {
        char *child = rel ? str_printf("%s/%s", rel, names[i]) : strdup(names[i]);
        if (!child) st = ddpm_error(DDPM_ERR_NOMEM, "out of memory");
        else st = scan_entry(s, child, depth, cls);
        free(names[i]);
    }
    for (; i < n; i++) free(names[i]);
    free(names);
    return st;
}

static ddpm_status scan(scan_state *s, const char *root) {
    memset(s, 0, sizeof *s);
    s->root = root;
    struct stat st;
    if (stat(root, &st) != 0)
        return ddpm_error(DDPM_ERR_IO, "cannot open '%s': %s", root, strerror(errno));
    if (!S_ISDIR(st.st_mode)) return ddpm_error(DDPM_ERR_ARG, "'%s': not a directory", root);
    bool fresh;
    ddpm_status r = mark_dir(s, &st, &fresh);
    return r != DDPM_OK ? r : scan_dir(s, NULL, 0, -1);
}

/* ---- the key: a 128-bit hash of the file list and the settings ------------------------ */

typedef struct {
    uint64_t a, b;
} hash128;

static void hash_bytes(hash128 *h, const void *p, size_t n) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) {
        h->a = (h->a ^ b[i]) * 0x100000001b3ULL; /* FNV-1a */
        h->b = (h->b ^ (b[i] * 0x9e3779b97f4a7c15ULL));
        h->b = ((h->b << 31) | (h->b >> 33)) * 0xbf58476d1ce4e5b9ULL;
    }
}

static void hash_u64(hash128 *h, uint64_t v) {
    uint8_t b[8];
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(v >> (8 * i));
    hash_bytes(h, b, 8);
}

static void compute_key(uint64_t key[2], const scan_state *s, const ddpm_folder_options *o) {
    hash128 h = {0xcbf29ce484222325ULL, 0x6a09e667f3bcc908ULL};
    hash_bytes(&h, "ddpm-folder", 11);
    hash_u64(&h, DDPM_FOLDER_CACHE_VERSION);
    hash_u64(&h, (uint64_t)o->size);
    hash_u64(&h, (uint64_t)o->channels);
    hash_u64(&h, (uint64_t)o->alpha);
    hash_u64(&h, (uint64_t)max_pixels(o));
    hash_u64(&h, (uint64_t)s->ncls);
    for (int i = 0; i < s->ncls; i++) hash_bytes(&h, s->classes[i], strlen(s->classes[i]) + 1);
    hash_u64(&h, (uint64_t)s->n);
    for (int i = 0; i < s->n; i++) {
        hash_bytes(&h, s->files[i].rel, strlen(s->files[i].rel) + 1);
        hash_u64(&h, (uint64_t)s->files[i].bytes);
        hash_u64(&h, (uint64_t)s->files[i].mtime_ns);
    }
    key[0] = h.a, key[1] = h.b;
}

/* ---- decoding one file ------------------------------------------------------------------- */

/* The bytes a TGA's header promises (stb_image's reading of it, TGA 2.0
 * section "Image File"): 18 header bytes, the image ID, the colour map when
 * the image is indexed, then the pixels: w*h of (bpp + 7) / 8 bytes
 * uncompressed, and run-length packets of at most 128 pixels (a count byte
 * and at least one pixel) when compressed. stb_image fills whatever is
 * missing with zeros, so a 22-byte file claiming 7936 x 4096 pixels came
 * out as a black image (found by fuzz_edit). */
static bool tga_truncated(const uint8_t *b, size_t n) {
    if (n < 18) return true;
    const uint64_t idlen = b[0], type = b[2], pal_start = b[3] | (unsigned)b[4] << 8,
                   pal_len = b[5] | (unsigned)b[6] << 8, pal_bytes = (b[7] + 7u) / 8,
                   w = b[12] | (unsigned)b[13] << 8, h = b[14] | (unsigned)b[15] << 8,
                   px_bytes = (b[16] + 7u) / 8;
    uint64_t need = 18 + idlen + (b[1] == 1 ? pal_start + pal_len * pal_bytes : 0);
    need += type >= 8 ? (w * h + 127) / 128 * (1 + px_bytes) : w * h * px_bytes;
    return n < need;
}

/* Structural end-of-file checks stb_image does not make: a PNG ends with its
 * IEND chunk, a JPEG with EOI (FF D9, allowing a little trailing padding), a
 * GIF with its trailer 0x3B, a TGA holds the pixels its header promises.
 * Returns NULL or why the file looks truncated. */
static const char *truncation(const uint8_t *b, size_t n) {
    static const uint8_t png[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (n >= 8 && !memcmp(b, png, 8)) {
        if (n < 20 || memcmp(b + n - 8, "IEND", 4) != 0) return "truncated PNG (no IEND chunk at the end)";
    } else if (n >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff) {
        size_t lo = n > 64 ? n - 64 : 2;
        bool eoi = false;
        for (size_t i = n - 1; i > lo && !eoi; i--) eoi = b[i - 1] == 0xff && b[i] == 0xd9;
        if (!eoi) return "truncated JPEG (no end-of-image marker)";
    } else if (n >= 6 && !memcmp(b, "GIF8", 4)) {
        if (b[n - 1] != 0x3b) return "truncated GIF (no trailer)";
    } else if (ddpm_stb_is_tga(b, n) && tga_truncated(b, n)) {
        return "truncated TGA (fewer bytes than its header's pixels)";
    }
    return NULL;
}

/* Header checks made before stb_image sees the bytes (stbi_info already
 * parses them). stb_image 2.27 (Debian's) built a JPEG Huffman table
 * without checking that its 16 code counts sum to at most 256, and wrote
 * past the table's arrays when they did (found by fuzz_folder; 2.28 added
 * the check). The decoder is now 2.30 (third_party/stb); the check stays,
 * for a clear message and for a build against another stb_image. It walks
 * the markers the way stb_image reads them: bytes between markers are
 * skipped, FF fill bytes too, FF 00 and restart markers are entropy data,
 * and every other marker's segment is skipped by its length; every DHT
 * segment found is checked. Returns NULL or why the file is refused. */
static const char *stb_guard(const uint8_t *b, size_t n) {
    size_t i = 0;
    bool progressive = false;
    unsigned defined = 0; /* bit 4 * class + id: the Huffman tables a DHT defined so far */
#define BYTE(q) ((q) < n ? b[q] : 0) /* stb_image reads 0 past the end */
    if (n < 2 || b[0] != 0xff) return NULL;
    while (i < n && b[i] == 0xff) i++;
    if (i >= n || b[i] != 0xd8) return NULL; /* not a JPEG to stb_image */
    for (i++; i < n;) {
        if (b[i++] != 0xff) continue;
        while (i < n && b[i] == 0xff) i++;
        if (i >= n) break;
        uint8_t m = b[i++];
        if (m == 0x00 || m == 0x01 || (m >= 0xd0 && m <= 0xd8)) continue; /* no segment */
        if (m == 0xd9) break;                                           /* EOI */
        if (i + 2 > n) break;
        size_t len = (size_t)b[i] << 8 | b[i + 1], end = i + len;
        if (m == 0xc4) {
            /* as stbi__process_marker: tables while the length lasts;
             * bytes past the end of the file read as 0 */
            size_t p = i + 2;
            for (long rest = (long)len - 2; rest > 0;) {
                int sum = 0, tc = BYTE(p) >> 4, th = BYTE(p) & 15;
                for (int k = 0; k < 16; k++) sum += BYTE(p + 1 + k);
                if (sum > 256) return "JPEG Huffman table with more than 256 codes";
                if (tc <= 1 && th <= 3) defined |= 1u << (4 * tc + th);
                rest -= 17 + sum;
                p += 17 + (size_t)sum;
            }
        } else if (m >= 0xc0 && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc) {
            progressive = m == 0xc2; /* SOF: stb_image decodes SOF0-SOF2 and refuses the rest */
        } else if (m == 0xda) {
            /* SOS: every table the scan decodes with must have been defined
             * (stb_image 2.27 decoded with uninitialised memory otherwise;
             * 2.30 with zeroed tables). A baseline scan uses both tables of
             * each component, a progressive DC scan its DC table in the
             * first pass only, a progressive AC scan its AC table. */
            int ns = BYTE(i + 2);
            size_t q = i + 3 + 2 * (size_t)ns;
            int ss = BYTE(q), ah = BYTE(q + 2) >> 4;
            bool dc = !progressive || (ss == 0 && ah == 0), ac = !progressive || ss > 0;
            for (int k = 0; k < ns && k < 4; k++) {
                int sel = BYTE(i + 4 + 2 * (size_t)k), td = sel >> 4, ta = sel & 15;
                if ((dc && td <= 3 && !(defined >> td & 1)) || (ac && ta <= 3 && !(defined >> (4 + ta) & 1)))
                    return "JPEG scan uses a Huffman table it does not define";
            }
        }
        if (len < 2) break; /* stb_image refuses the file */
        i = end;
    }
#undef BYTE
    return NULL;
}

/* A PNG's size from its IHDR. stbi_info refuses a PNG of more than 2^30
 * bytes itself, with the same message as for a file that is no image at
 * all; reading the header here lets such a bomb be reported as too large. */
static bool png_size(const uint8_t *b, size_t n, int *w, int *h) {
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (n < 24 || memcmp(b, sig, 8) != 0 || memcmp(b + 12, "IHDR", 4) != 0) return false;
    uint32_t v[2];
    for (int i = 0; i < 2; i++)
        v[i] = (uint32_t)b[16 + 4 * i] << 24 | (uint32_t)b[17 + 4 * i] << 16 |
               (uint32_t)b[18 + 4 * i] << 8 | b[19 + 4 * i];
    if (v[0] == 0 || v[1] == 0 || v[0] > INT_MAX || v[1] > INT_MAX) return false;
    *w = (int)v[0], *h = (int)v[1];
    return true;
}

/* The whole file into *buf (malloc'ed). Returns 0 or an errno value (EFBIG
 * when larger than the cap). */
static int read_file(const char *path, uint8_t **buf, size_t *n) {
    *buf = NULL, *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return errno;
    struct stat st;
    int err = 0;
    if (fstat(fileno(f), &st) != 0) err = errno;
    else if (!S_ISREG(st.st_mode)) err = EINVAL;
    else if (st.st_size > DDPM_FOLDER_MAX_FILE_BYTES) err = EFBIG;
    else if (!(*buf = malloc(st.st_size ? (size_t)st.st_size : 1))) err = ENOMEM;
    else {
        *n = fread(*buf, 1, (size_t)st.st_size, f);
        if (ferror(f)) err = errno ? errno : EIO;
        else if (*n != (size_t)st.st_size) err = EIO; /* shrank while reading */
    }
    fclose(f);
    if (err) {
        free(*buf);
        *buf = NULL;
    }
    return err;
}

/* px (w*h*comp) with comp 1..4 -> out (w*h*C), C = 1 or 3: alpha composited
 * onto bg, gray <-> colour. */
static void to_channels(uint8_t *out, const uint8_t *px, size_t npx, int comp, int C, int bg) {
    for (size_t i = 0; i < npx; i++) {
        const uint8_t *p = px + i * comp;
        int a = comp == 2 ? p[1] : comp == 4 ? p[3] : 255;
        int v[3];
        for (int c = 0; c < 3; c++) {
            int x = comp >= 3 ? p[c] : p[0];
            v[c] = (x * a + bg * (255 - a) + 127) / 255;
        }
        if (C == 1) out[i] = (uint8_t)((299 * v[0] + 587 * v[1] + 114 * v[2] + 500) / 1000);
        else for (int c = 0; c < 3; c++) out[i * 3 + c] = (uint8_t)v[c];
    }
}

/* The stored size of a w x h image and the source window it comes from:
 * the longer side center-cropped to at most 2:1. */
typedef struct {
    int x0, y0, sw, sh; /* source window */
    int ow, oh;         /* output size */
} fit;

static fit fit_size(int w, int h, int size) {
    fit f = {0, 0, w, h, size, size};
    bool wide = w >= h;
    int s = wide ? h : w, l = wide ? w : h;
    if (l > 2 * s) {
        int keep = 2 * s, off = (l - keep) / 2;
        if (wide) f.x0 = off, f.sw = keep;
        else f.y0 = off, f.sh = keep;
        l = keep;
    }
    int64_t ol = ((int64_t)2 * l * size + s) / (2 * (int64_t)s); /* round(l * size / s) */
    if (ol < size) ol = size;
    if (ol > 2 * size) ol = 2 * size;
    if (wide) f.ow = (int)ol;
    else f.oh = (int)ol;
    return f;
}

/* img (h, w, C) -> *out (f.oh, f.ow, C), malloc'ed. */
static bool resize_fit(uint8_t **out, const uint8_t *img, int w, int C, const fit *f) {
    *out = malloc((size_t)f->ow * f->oh * C);
    if (!*out) return false;
    const uint8_t *src = img + ((size_t)f->y0 * w + f->x0) * C;
    if (f->sw == f->ow && f->sh == f->oh) { /* already the right size: copy the window */
        for (int y = 0; y < f->oh; y++)
            memcpy(*out + (size_t)y * f->ow * C, src + (size_t)y * w * C, (size_t)f->ow * C);
        return true;
    }
    /* Box (area average) when shrinking, Catmull-Rom when enlarging. Not the
     * triangle filter: stb_image_resize 0.97 (Debian's) trips its own
     * assertion in stbir__normalize_downsample_coefficients for ratios such
     * as 7 -> 5 with it. */
    stbir_filter filt = f->oh < f->sh ? STBIR_FILTER_BOX : STBIR_FILTER_CATMULLROM;
    return stbir_resize_uint8_generic(src, f->sw, f->sh, w * C, *out, f->ow, f->oh, 0, C,
                                      STBIR_ALPHA_CHANNEL_NONE, 0, STBIR_EDGE_CLAMP, filt,
                                      STBIR_COLORSPACE_LINEAR, NULL) != 0;
}

typedef struct {
    uint8_t *px; /* (h, w, C) or NULL when skipped */
    int w, h;
    int kind;    /* -1 decoded, else a ddpm_skip_kind */
    char *msg;   /* the skip message */
} decoded;

/* Decode one file into d. Returns false only when out of memory. */
static bool decode_file(decoded *d, const char *path, const ddpm_folder_options *o) {
    *d = (decoded){NULL, 0, 0, -1, NULL};
    uint8_t *buf;
    size_t n;
    int err = read_file(path, &buf, &n), w, h, comp;
    if (err) {
        d->kind = DDPM_SKIP_UNREADABLE;
        d->msg = err == EFBIG ? str_printf("'%s': unreadable: larger than %lld bytes", path,
                                           (long long)DDPM_FOLDER_MAX_FILE_BYTES)
                              : str_printf("'%s': unreadable: %s", path, strerror(err));
        return d->msg != NULL;
    }
    const char *why = stb_guard(buf, n);
    if (why) {
        d->kind = DDPM_SKIP_CORRUPT;
        d->msg = str_printf("'%s': corrupt: %s", path, why);
    } else if (!stbi_info_from_memory(buf, (int)n, &w, &h, &comp) && !png_size(buf, n, &w, &h)) {
        d->kind = DDPM_SKIP_NOT_IMAGE;
        d->msg = str_printf("'%s': not an image (no format stb_image reads)", path);
    } else if (w <= 0 || h <= 0 || (int64_t)w * h > max_pixels(o)) {
        d->kind = DDPM_SKIP_TOO_LARGE;
        d->msg = str_printf("'%s': %d x %d pixels is more than the cap of %lld, not decoded", path, w,
                            h, (long long)max_pixels(o));
    } else if ((why = truncation(buf, n))) {
        d->kind = DDPM_SKIP_CORRUPT;
        d->msg = str_printf("'%s': corrupt: %s", path, why);
    }
    if (d->kind >= 0) {
        free(buf);
        return d->msg != NULL;
    }
    uint8_t *px = stbi_load_from_memory(buf, (int)n, &w, &h, &comp, 0);
    free(buf);
    if (!px) {
        const char *r = stbi_failure_reason();
        d->kind = DDPM_SKIP_CORRUPT;
        /* not r itself: stb_image puts an unknown PNG chunk's raw type bytes in it */
        d->msg = str_printf("'%s': corrupt: stb_image: %s", path, r ? ddpm_show(r).s : "decoding failed");
        return d->msg != NULL;
    }
    size_t npx = (size_t)w * h;
    uint8_t *img = malloc(npx * o->channels);
    fit f = fit_size(w, h, o->size);
    bool ok = img != NULL;
    if (ok) to_channels(img, px, npx, comp, o->channels, o->alpha == DDPM_ALPHA_BLACK ? 0 : 255);
    stbi_image_free(px);
    if (ok) ok = resize_fit(&d->px, img, w, o->channels, &f);
    free(img);
    d->w = f.ow, d->h = f.oh;
    return ok;
}

/* ---- decoding the folder --------------------------------------------------------------- */

static ddpm_status decode_all(decoded *dec, const scan_state *s, const ddpm_folder_options *o) {
    int done = 0, oom = 0;
#pragma omp parallel for schedule(dynamic, 1)
    for (int i = 0; i < s->n; i++) {
        char path[PATH_CAP];
        snprintf(path, sizeof path, "%s/%s", s->root, s->files[i].rel);
        if (!decode_file(&dec[i], path, o)) {
#pragma omp atomic write
            oom = 1;
        }
        int d;
#pragma omp atomic capture
        d = ++done;
        if (o->progress && omp_get_thread_num() == 0) o->progress(o->ctx, d, s->n);
    }
    if (o->progress && s->n) o->progress(o->ctx, s->n, s->n);
    return oom ? ddpm_error(DDPM_ERR_NOMEM, "'%s': out of memory while decoding", s->root) : DDPM_OK;
}

static ddpm_status copy_classes(ddpm_image_folder *f, const scan_state *s) {
    f->num_classes = s->ncls;
    f->class_names = calloc((size_t)s->ncls + 1, sizeof *f->class_names);
    f->class_count = calloc((size_t)s->ncls + 1, sizeof *f->class_count);
    if (!f->class_names || !f->class_count) return ddpm_error(DDPM_ERR_NOMEM, "out of memory");
    for (int i = 0; i < s->ncls; i++)
        if (!(f->class_names[i] = strdup(s->classes[i]))) return ddpm_error(DDPM_ERR_NOMEM, "out of memory");
    return DDPM_OK;
}

/* Move the decoded images into f (one buffer) and the skip messages into skips. */
static ddpm_status assemble(ddpm_image_folder *f, decoded *dec, const scan_state *s,
                            const ddpm_folder_options *o, folder_skips *skips) {
    size_t bytes = 0;
    int n = 0;
    for (int i = 0; i < s->n; i++)
        if (dec[i].kind < 0) bytes += (size_t)dec[i].w * dec[i].h * o->channels, n++;
    f->n = n, f->c = o->channels, f->size = o->size;
    f->w = malloc(((size_t)n + 1) * sizeof *f->w);
    f->h = malloc(((size_t)n + 1) * sizeof *f->h);
    f->labels = malloc(((size_t)n + 1) * sizeof *f->labels);
    f->offset = malloc(((size_t)n + 1) * sizeof *f->offset);
    uint8_t *pixels = malloc(bytes ? bytes : 1);
    f->pixels = pixels;
    if (!f->w || !f->h || !f->labels || !f->offset || !f->pixels)
        return ddpm_error(DDPM_ERR_NOMEM, "'%s': out of memory for %zu bytes of images", s->root, bytes);
    ddpm_status st = copy_classes(f, s);
    size_t off = 0;
    for (int i = 0, j = 0; i < s->n; i++) {
        if (dec[i].kind >= 0) {
            if (st == DDPM_OK) st = folder_skips_add(skips, dec[i].kind, dec[i].msg);
            else free(dec[i].msg);
            dec[i].msg = NULL;
            continue;
        }
        size_t b = (size_t)dec[i].w * dec[i].h * o->channels;
        memcpy(pixels + off, dec[i].px, b);
        free(dec[i].px);
        dec[i].px = NULL;
        f->w[j] = dec[i].w, f->h[j] = dec[i].h, f->offset[j] = off, f->labels[j] = s->files[i].cls;
        off += b;
        j++;
    }
    return st;
}

static ddpm_status decode_folder(ddpm_image_folder *f, const scan_state *s,
                                 const ddpm_folder_options *o, folder_skips *skips) {
    decoded *dec = calloc((size_t)s->n + 1, sizeof *dec);
    if (!dec) return ddpm_error(DDPM_ERR_NOMEM, "out of memory");
    ddpm_status st = decode_all(dec, s, o);
    if (st == DDPM_OK) st = assemble(f, dec, s, o, skips);
    for (int i = 0; i < s->n; i++) {
        free(dec[i].px);
        free(dec[i].msg);
    }
    free(dec);
    return st;
}

/* ---- loading --------------------------------------------------------------------------- */

void ddpm_folder_free(ddpm_image_folder *f) {
    free(f->w);
    free(f->h);
    free(f->offset);
    if (f->map_) munmap(f->map_, f->map_len_);
    else free((void *)f->pixels);
    free(f->labels);
    if (f->class_names)
        for (int i = 0; i < f->num_classes; i++) free(f->class_names[i]);
    free(f->class_names);
    free(f->class_count);
    memset(f, 0, sizeof *f);
}

static ddpm_status check_options(const ddpm_folder_options *o) {
    if (o->size < 1 || o->size > 4096)
        return ddpm_error(DDPM_ERR_ARG, "image size %d outside [1, 4096]", o->size);
    if (o->channels != 1 && o->channels != 3)
        return ddpm_error(DDPM_ERR_ARG, "%d channels: image folders give 1 or 3", o->channels);
    if (o->alpha != DDPM_ALPHA_WHITE && o->alpha != DDPM_ALPHA_BLACK)
        return ddpm_error(DDPM_ERR_ARG, "unknown alpha mode %d", (int)o->alpha);
    return DDPM_OK;
}

/* Skip messages to the callback, counts to the report; strict: the first is the error. */
static ddpm_status report_skips(const folder_skips *k, const ddpm_folder_options *o,
                                ddpm_folder_report *r) {
    for (int i = 0; i < k->n; i++) {
        r->skipped[k->v[i].kind]++;
        r->skipped_total++;
        if (o->warn) o->warn(o->ctx, (ddpm_skip_kind)k->v[i].kind, k->v[i].msg);
    }
    if (o->strict && k->n) return ddpm_error(DDPM_ERR_FORMAT, "%s (strict: a skipped file is an error)", k->v[0].msg);
    return DDPM_OK;
}

static ddpm_status finish(ddpm_image_folder *f, const char *dir, folder_skips *k,
                          const ddpm_folder_options *o, ddpm_folder_report *r) {
    ddpm_status st = report_skips(k, o, r);
    if (st == DDPM_OK && f->n == 0)
        st = ddpm_error(DDPM_ERR_FORMAT, "'%s': no usable image among %d files%s", dir, r->files,
                        r->skipped_total ? " (see the messages above)" : "");
    for (int i = 0; st == DDPM_OK && i < f->n; i++)
        if (f->labels[i] >= 0) f->class_count[f->labels[i]]++;
    return st;
}

ddpm_status ddpm_folder_load(ddpm_image_folder *f, const char *dir, const ddpm_folder_options *o,
                             ddpm_folder_report *report) {
    memset(f, 0, sizeof *f);
    ddpm_folder_report dummy;
    ddpm_folder_report *r = report ? report : &dummy;
    memset(r, 0, sizeof *r);
    ddpm_status st = check_options(o);
    if (st != DDPM_OK) return st;
    scan_state s;
    folder_skips k = {0};
    if ((st = scan(&s, dir)) != DDPM_OK) goto done;
    r->files = s.n;
    uint64_t key[2];
    compute_key(key, &s, o);
    if (o->cache_path && folder_cache_read(o->cache_path, key, o, f, &k) == DDPM_OK) {
        r->from_cache = true;
    } else {
        ddpm_folder_free(f);
        folder_skips_free(&k);
        for (int i = 0; i < s.skips.n; i++) /* scan-time skips first, then per file */
            if ((st = folder_skips_add(&k, s.skips.v[i].kind, strdup(s.skips.v[i].msg)))) goto done;
        if ((st = decode_folder(f, &s, o, &k)) != DDPM_OK) goto done;
        if (o->cache_path && f->n > 0 && !(o->strict && k.n) &&
            folder_cache_write(o->cache_path, key, o, f, &k) != DDPM_OK)
            snprintf(r->cache_error, sizeof r->cache_error, "%s", ddpm_last_error());
    }
    st = finish(f, dir, &k, o, r);
done:
    scan_free(&s);
    folder_skips_free(&k);
    if (st != DDPM_OK) ddpm_folder_free(f);
    return st;
}

/* ---- batches ------------------------------------------------------------------------------ */

void ddpm_folder_batch(float *out, const ddpm_image_folder *f, const int *idx, int B,
                       ddpm_crop_mode crop, bool hflip, ddpm_rng *rng) {
    int S = f->size, C = f->c;
    size_t D = (size_t)C * S * S;
    for (int b = 0; b < B; b++) {
        int i = idx[b], w = f->w[i], h = f->h[i];
        int slack = w > h ? w - S : h - S, off = slack / 2;
        if (crop == DDPM_CROP_RANDOM) off = (int)ddpm_rng_below(rng, (uint32_t)slack + 1);
        bool flip = hflip && ddpm_rng_below(rng, 2) == 1;
        int x0 = w > h ? off : 0, y0 = w > h ? 0 : off;
        const uint8_t *px = f->pixels + f->offset[i];
        float *dst = out + (size_t)b * D;
        for (int c = 0; c < C; c++)
            for (int y = 0; y < S; y++) {
                const uint8_t *row = px + ((size_t)(y0 + y) * w + x0) * C + c;
                float *o = dst + ((size_t)c * S + y) * S;
                for (int x = 0; x < S; x++)
                    o[x] = (float)row[(size_t)(flip ? S - 1 - x : x) * C] / 127.5f - 1.0f;
            }
    }
}

ddpm_status ddpm_image_file_load(uint8_t **px, const char *path, const ddpm_folder_options *o) {
    *px = NULL;
    ddpm_status st = check_options(o);
    if (st) return st;
    decoded d;
    if (!decode_file(&d, path, o)) st = ddpm_error(DDPM_ERR_NOMEM, "out of memory decoding '%s'", path);
    else if (d.kind >= 0) st = ddpm_error(d.kind == DDPM_SKIP_UNREADABLE ? DDPM_ERR_IO : DDPM_ERR_FORMAT, "%s", d.msg);
    else if (!(*px = malloc((size_t)o->channels * o->size * o->size)))
        st = ddpm_error(DDPM_ERR_NOMEM, "out of memory decoding '%s'", path);
    int S = o->size, C = o->channels, x0 = (d.w - S) / 2, y0 = (d.h - S) / 2;
    for (int c = 0; !st && c < C; c++) /* the center crop, interleaved -> planar */
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++) (*px)[((size_t)c * S + y) * S + x] = d.px[((size_t)(y0 + y) * d.w + x0 + x) * C + c];
    free(d.px);
    free(d.msg);
    return st;
}

ddpm_status ddpm_folder_to_dataset(ddpm_dataset *ds, const ddpm_image_folder *f) {
    memset(ds, 0, sizeof *ds);
    size_t D = (size_t)f->c * f->size * f->size;
    bool labelled = f->num_classes > 0;
    for (int i = 0; i < f->n && labelled; i++) labelled = f->labels[i] >= 0;
    ds->pixels = malloc(f->n * D + 1);
    ds->labels = labelled ? malloc(((size_t)f->n + 1) * sizeof(int)) : NULL;
    if (!ds->pixels || (labelled && !ds->labels)) {
        ddpm_dataset_free(ds);
        return ddpm_error(DDPM_ERR_NOMEM, "out of memory for %d images", f->n);
    }
    int S = f->size, C = f->c;
    for (int i = 0; i < f->n; i++) { /* the center crop, interleaved -> planar */
        int w = f->w[i], h = f->h[i], x0 = (w - S) / 2, y0 = (h - S) / 2;
        const uint8_t *px = f->pixels + f->offset[i];
        uint8_t *dst = ds->pixels + (size_t)i * D;
        for (int c = 0; c < C; c++)
            for (int y = 0; y < S; y++)
                for (int x = 0; x < S; x++)
                    dst[((size_t)c * S + y) * S + x] = px[((size_t)(y0 + y) * w + x0 + x) * C + c];
        if (labelled) ds->labels[i] = f->labels[i];
    }
    ds->n = f->n, ds->c = f->c, ds->h = ds->w = f->size;
    ds->num_classes = labelled ? f->num_classes : 0;
    return DDPM_OK;
}

/* ---- the class map ---------------------------------------------------------------------- */

char *ddpm_folder_classes_json(char *const *names, int n) {
    size_t cap = 3;
    for (int i = 0; i < n; i++) cap += 6 * strlen(names[i]) + 3;
    char *s = malloc(cap), *p = s;
    if (!s) {
        ddpm_error(DDPM_ERR_NOMEM, "out of memory");
        return NULL;
    }
    *p++ = '[';
    for (int i = 0; i < n; i++) {
        if (i) *p++ = ',';
        *p++ = '"';
        for (const unsigned char *c = (const unsigned char *)names[i]; *c; c++) {
            if (*c == '"' || *c == '\\') *p++ = '\\', *p++ = (char)*c;
            else if (*c < 0x20) p += sprintf(p, "\\u%04x", *c);
            else *p++ = (char)*c;
        }
        *p++ = '"';
    }
    *p++ = ']';
    *p = '\0';
    return s;
}

void ddpm_folder_classes_free(char **names, int n) {
    if (names)
        for (int i = 0; i < n; i++) free(names[i]);
    free(names);
}

/* One JSON string starting at *p (after the opening quote) into out (cap >= its
 * length + 1); *p ends after the closing quote. Only \" \\ \/ and \u00XX
 * escapes occur in what ddpm_folder_classes_json writes; others are accepted
 * too (\n \t \r \b \f). */
static int hexdigit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static bool parse_string(const char **p, char *out) {
    const char *s = *p;
    while (*s && *s != '"') {
        char c = *s++;
        if (c == '\\') {
            char e = *s++;
            if (e == 'u') {
                unsigned v = 0; /* exactly 4 hex digits: sscanf's %4x takes fewer (then s += 4
                                 * jumped past the NUL), a sign or spaces */
                for (int i = 0; i < 4; i++) {
                    int d = hexdigit(s[i]); /* the NUL is no digit: never read past it */
                    if (d < 0) return false;
                    v = v * 16 + (unsigned)d;
                }
                if (v == 0 || v > 0x7f) return false;
                c = (char)v;
                s += 4;
            } else {
                const char *from = "\"\\/ntrbf", *to = "\"\\/\n\t\r\b\f";
                const char *k = e ? strchr(from, e) : NULL;
                if (!k) return false;
                c = to[k - from];
            }
        }
        *out++ = c;
    }
    *out = '\0';
    if (*s != '"') return false;
    *p = s + 1;
    return true;
}

ddpm_status ddpm_folder_classes_parse(const char *json, char ***names, int *n) {
    *names = NULL, *n = 0;
    const char *p = json;
    int cap = 0;
    if (*p++ != '[') goto bad;
    while (*p != ']') {
        if (*n && *p++ != ',') goto bad;
        if (*p++ != '"') goto bad;
        char *s = malloc(strlen(p) + 1);
        if (!s || !ddpm_grow((void **)names, &cap, *n + 1, sizeof **names)) {
            free(s);
            ddpm_folder_classes_free(*names, *n);
            *names = NULL, *n = 0;
            return ddpm_error(DDPM_ERR_NOMEM, "out of memory");
        }
        (*names)[(*n)++] = s;
        if (!parse_string(&p, s)) goto bad;
    }
    if (p[1] != '\0') goto bad;
    return DDPM_OK;
bad:
    ddpm_folder_classes_free(*names, *n);
    *names = NULL, *n = 0;
    /* not the text itself: it is untrusted bytes (newlines, control bytes) */
    return ddpm_error(DDPM_ERR_FORMAT, "malformed class list (at byte %zu)", (size_t)(p - json));
}

/* ---- paths -------------------------------------------------------------------------------- */

static bool file_exists(const char *dir, const char *name) {
    char p[PATH_CAP];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

bool ddpm_folder_is_idx_dir(const char *dir) {
    return file_exists(dir, "train-images-idx3-ubyte") || file_exists(dir, "train-images-idx3-ubyte.gz");
}

ddpm_status ddpm_folder_default_cache_path(char *out, size_t cap, const char *dir,
                                           const ddpm_folder_options *o) {
    char base[PATH_CAP], abs[PATH_CAP];
    const char *env = getenv("DDPM_CACHE_DIR"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (env && *env) snprintf(base, sizeof base, "%s", env);
    else if (xdg && *xdg) snprintf(base, sizeof base, "%s/ddpm", xdg);
    else if (home && *home) snprintf(base, sizeof base, "%s/.cache/ddpm", home);
    else return ddpm_error(DDPM_ERR_IO, "no cache directory: set DDPM_CACHE_DIR or HOME");
    if (!realpath(dir, abs)) return ddpm_error(DDPM_ERR_IO, "cannot open '%s': %s", dir, strerror(errno));
    if (ddpm_mkdirs(base) != 0)
        return ddpm_error(DDPM_ERR_IO, "cannot create cache directory '%s': %s", base, strerror(errno));
    hash128 h = {0xcbf29ce484222325ULL, 0};
    hash_bytes(&h, abs, strlen(abs));
    int n = snprintf(out, cap, "%s/folder-%016llx-s%d-c%d-%s.u8", base, (unsigned long long)h.a,
                     o->size, o->channels, ddpm_alpha_name(o->alpha));
    if (n < 0 || (size_t)n >= cap) return ddpm_error(DDPM_ERR_ARG, "cache path too long under '%s'", base);
    return DDPM_OK;
}

ddpm_status ddpm_image_file_info(const char *path, int *w, int *h, int *comp) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return ddpm_error(DDPM_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    int ok = stbi_info_from_file(fp, w, h, comp);
    fclose(fp);
    if (!ok) return ddpm_error(DDPM_ERR_FORMAT, "'%s': not an image (no format stb_image reads)", path);
    return DDPM_OK;
}
