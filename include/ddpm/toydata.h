/* toydata.h: the 2-D point datasets of ddpm toy, drawn from one seeded rng.
 *
 *   scurve:       scikit-learn's make_s_curve (noise 0), docs/design.md §7:
 *                 u, v ~ U(0, 1), t = 3 pi (u - 1/2), point
 *                 (sin t, 2 v, sign(t)(cos t - 1)); the 2-D data are the
 *                 first and third coordinates divided by 10 (the seed's data).
 *   swissroll:    make_swiss_roll's (x, z) plane: t = 1.5 pi (1 + 2 u),
 *                 (t cos t, t sin t) / 10.
 *   moons:        make_moons (noise 0.05): half the points on the upper arc
 *                 (cos a, sin a), half on (1 - cos a, 1/2 - sin a), a ~ U(0, pi),
 *                 plus N(0, 0.05^2) per coordinate.
 *   8gaussians:   eight Gaussians of std 0.5/sqrt(2) around the centres
 *                 2 sqrt(2) (cos(k pi/4), sin(k pi/4)) (FFJORD's toy data).
 *   checkerboard: uniform on the 8 black squares of a 4 x 4 board over
 *                 [-4, 4]^2 (FFJORD's toy data).
 *
 * Per point the draws are in a fixed order, so a seed fixes the data. Points
 * are [n, 2] floats, x then y.
 */
#ifndef DDPM_TOYDATA_H
#define DDPM_TOYDATA_H

#include "ddpm/common.h"
#include "ddpm/rng.h"

typedef enum {
    DDPM_TOY_SCURVE = 0,
    DDPM_TOY_SWISSROLL,
    DDPM_TOY_MOONS,
    DDPM_TOY_8GAUSSIANS,
    DDPM_TOY_CHECKERBOARD
} ddpm_toy_data_kind;

/* "scurve" ... "checkerboard" <-> kind; parse returns -1 for another name. */
int ddpm_toy_data_parse(const char *name);
const char *ddpm_toy_data_name(ddpm_toy_data_kind kind);
/* `ddpm toy --data`: a dataset's name, or a path (it holds a '/' or a '.',
 * e.g. points.csv). Anything else is a typo: DDPM_ERR_ARG with "unknown toy
 * dataset 'X' (expected scurve, ..., checkerboard or a FILE.csv)". */
ddpm_status ddpm_toy_data_check(const char *data);

/* xy [n, 2] = n points of the dataset. */
void ddpm_toy_data_draw(float *xy, int n, ddpm_toy_data_kind kind, ddpm_rng *rng);

/* The affine map between data and model coordinates, per point
 * model = (data - shift) / scale (one scale for both axes keeps the shape). */
typedef struct {
    double shift[2], scale;
} ddpm_toy_scaling;

/* Centre the points on their mean and divide by the largest |coordinate|
 * of the centred points (1 if all are equal): the data span [-1, 1], the
 * range the sampler clips its x_0 prediction to. */
ddpm_toy_scaling ddpm_toy_scaling_unit(const float *xy, int n);
/* Identity: model = data (what the seed does). */
ddpm_toy_scaling ddpm_toy_scaling_none(void);
/* In place: to model coordinates, and back. */
void ddpm_toy_to_model(float *xy, int n, const ddpm_toy_scaling *s);
void ddpm_toy_to_data(float *xy, int n, const ddpm_toy_scaling *s);

#endif
