/* toydata.c: the 2-D point datasets of ddpm toy. See toydata.h. */
#include "ddpm/toydata.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "core/util.h"

#define PI 3.14159265358979323846

static const char *const NAMES[] = {"scurve", "swissroll", "moons", "8gaussians", "checkerboard"};
#define NKINDS ((int)(sizeof NAMES / sizeof *NAMES))

int ddpm_toy_data_parse(const char *name) {
    for (int k = 0; name && k < NKINDS; k++)
        if (!strcmp(name, NAMES[k])) return k;
    return -1;
}

const char *ddpm_toy_data_name(ddpm_toy_data_kind kind) {
    return (int)kind >= 0 && (int)kind < NKINDS ? NAMES[kind] : "?";
}

ddpm_status ddpm_toy_data_check(const char *data) {
    if (ddpm_toy_data_parse(data) >= 0 || strchr(data, '/') || strchr(data, '.')) return DDPM_OK;
    const char *names[NKINDS + 1]; /* the message's list ends "or a FILE.csv" */
    memcpy(names, NAMES, sizeof NAMES);
    names[NKINDS] = "a FILE.csv";
    ddpm_enum_lookup("toy dataset", names, 0, NKINDS + 1, data);
    return DDPM_ERR_ARG;
}

/* One point of `kind` into p[0..2). */
static void draw_point(float *p, int i, int n, ddpm_toy_data_kind kind, ddpm_rng *rng) {
    double x, y;
    switch (kind) {
    case DDPM_TOY_SCURVE: {
        double u = ddpm_rng_uniform(rng), v = ddpm_rng_uniform(rng), t = 3.0 * PI * (u - 0.5);
        (void)v; /* the second coordinate 2 v is drawn (as scikit-learn does) and dropped */
        x = sin(t), y = (t > 0 ? 1.0 : t < 0 ? -1.0 : 0.0) * (cos(t) - 1.0);
        x /= 10.0, y /= 10.0;
        break;
    }
    case DDPM_TOY_SWISSROLL: {
        double t = 1.5 * PI * (1.0 + 2.0 * ddpm_rng_uniform(rng));
        x = t * cos(t) / 10.0, y = t * sin(t) / 10.0;
        break;
    }
    case DDPM_TOY_MOONS: {
        double a = PI * ddpm_rng_uniform(rng);
        bool upper = i < (n + 1) / 2;
        x = upper ? cos(a) : 1.0 - cos(a);
        y = upper ? sin(a) : 0.5 - sin(a);
        x += 0.05 * ddpm_rng_normal(rng), y += 0.05 * ddpm_rng_normal(rng);
        break;
    }
    case DDPM_TOY_8GAUSSIANS: {
        double k = (double)ddpm_rng_below(rng, 8), s = 0.5 / sqrt(2.0), r = 2.0 * sqrt(2.0);
        x = r * cos(k * PI / 4.0) + s * ddpm_rng_normal(rng);
        y = r * sin(k * PI / 4.0) + s * ddpm_rng_normal(rng);
        break;
    }
    default: { /* checkerboard: column c in 0..3, row chosen so (c + row) is even */
        double u = 4.0 * ddpm_rng_uniform(rng), w = ddpm_rng_uniform(rng);
        int c = (int)u, row = 2 * (int)ddpm_rng_below(rng, 2) + (c % 2);
        x = 2.0 * (u - 2.0), y = 2.0 * (row + w - 2.0);
        break;
    }
    }
    p[0] = (float)x, p[1] = (float)y;
}

void ddpm_toy_data_draw(float *xy, int n, ddpm_toy_data_kind kind, ddpm_rng *rng) {
    for (int i = 0; i < n; i++) draw_point(xy + 2 * (size_t)i, i, n, kind, rng);
}

ddpm_toy_scaling ddpm_toy_scaling_unit(const float *xy, int n) {
    ddpm_toy_scaling s = {{0.0, 0.0}, 1.0};
    if (n <= 0) return s;
    for (int i = 0; i < n; i++) s.shift[0] += xy[2 * i], s.shift[1] += xy[2 * i + 1];
    s.shift[0] /= n, s.shift[1] /= n;
    double m = 0.0;
    for (int i = 0; i < n; i++)
        for (int d = 0; d < 2; d++) m = fmax(m, fabs(xy[2 * i + d] - s.shift[d]));
    s.scale = m > 0.0 ? m : 1.0;
    return s;
}

ddpm_toy_scaling ddpm_toy_scaling_none(void) { return (ddpm_toy_scaling){{0.0, 0.0}, 1.0}; }

void ddpm_toy_to_model(float *xy, int n, const ddpm_toy_scaling *s) {
    for (int i = 0; i < n; i++)
        for (int d = 0; d < 2; d++) xy[2 * i + d] = (float)((xy[2 * i + d] - s->shift[d]) / s->scale);
}

void ddpm_toy_to_data(float *xy, int n, const ddpm_toy_scaling *s) {
    for (int i = 0; i < n; i++)
        for (int d = 0; d < 2; d++) xy[2 * i + d] = (float)(xy[2 * i + d] * s->scale + s->shift[d]);
}
