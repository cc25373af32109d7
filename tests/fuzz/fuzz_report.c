/* fuzz_report: ddpm_report_write on a run directory whose log.csv (the
 * input up to its first NUL byte) and run.txt (the rest, when there is a
 * NUL) are arbitrary bytes. A directory with a log.csv is a run, so the
 * page is always written; it must be whole (ends with </html>), hold no
 * <script> and no <img> (there are no PNGs), and no SVG coordinate may be
 * nan or inf. */
#include "fuzz.h"

#include "ddpm/report.h"

static char g_dir[64];

static void put(const char *name, const uint8_t *data, size_t size) {
    char path[128];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_dir[0]) {
        snprintf(g_dir, sizeof g_dir, "/tmp/ddpm-fuzz-report-XXXXXX");
        if (!mkdtemp(g_dir)) abort();
    }
    const uint8_t *nul = memchr(data, 0, size);
    size_t nlog = nul ? (size_t)(nul - data) : size;
    put("log.csv", data, nlog);
    char path[128];
    snprintf(path, sizeof path, "%s/run.txt", g_dir);
    if (nul) put("run.txt", nul + 1, size - nlog - 1);
    else unlink(path);
    char out[128];
    snprintf(out, sizeof out, "%s/report.html", g_dir);
    const char *dirs[] = {g_dir};
    FUZZ_CHECK(ddpm_report_write(dirs, 1, out, NULL) == DDPM_OK);
    FILE *f = fopen(out, "rb");
    FUZZ_CHECK(f != NULL);
    static char page[1 << 22];
    size_t n = fread(page, 1, sizeof page - 1, f);
    fclose(f);
    page[n] = '\0';
    FUZZ_CHECK(n >= 8 && !strcmp(page + n - 8, "</html>\n"));
    FUZZ_CHECK(!strstr(page, "<script") && !strstr(page, "<img"));
    for (char *p = strstr(page, "<svg"); p; p = strstr(p + 1, "<svg")) {
        char *end = strstr(p, "</svg>");
        FUZZ_CHECK(end != NULL);
        for (char *t = p; t && t < end; t = strchr(t + 1, '<')) { /* inside tags: text from the log is escaped */
            char *close = strchr(t, '>');
            FUZZ_CHECK(close != NULL);
            *close = '\0';
            FUZZ_CHECK(!strstr(t, "nan") && !strstr(t, "inf"));
            *close = '>';
        }
    }
    return 0;
}
