/* kv.c: ordered key=value results (kv.h). */
#include "ddpm/kv.h"

#include <stdarg.h>

void ddpm_kv_put(ddpm_kv *kv, const char *key, bool is_str, const char *fmt, ...) {
    if (kv->n >= DDPM_KV_MAX) return;
    va_list ap;
    va_start(ap, fmt);
    snprintf(kv->key[kv->n], sizeof kv->key[0], "%s", key);
    vsnprintf(kv->val[kv->n], sizeof kv->val[0], fmt, ap);
    va_end(ap);
    kv->str[kv->n++] = is_str;
}

void ddpm_kv_print(const ddpm_kv *kv, FILE *out, bool json) {
    for (int i = 0; i < kv->n && !json; i++) fprintf(out, "%s=%s\n", kv->key[i], kv->val[i]);
    if (!json) return;
    fputc('{', out);
    for (int i = 0; i < kv->n; i++) {
        fprintf(out, "%s\"%s\": %s", i ? ", " : "", kv->key[i], kv->str[i] ? "\"" : "");
        for (const unsigned char *p = (const unsigned char *)kv->val[i]; *p; p++) {
            if (*p == '"' || *p == '\\') fprintf(out, "\\%c", *p);
            else if (*p < 0x20) fprintf(out, "\\u%04x", *p);
            else fputc(*p, out);
        }
        fputs(kv->str[i] ? "\"" : "", out);
    }
    fputs("}\n", out);
}
