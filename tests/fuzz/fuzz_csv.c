/* fuzz_csv: ddpm_csv_read_points (the 2-D "x,y" reader of `ddpm toy`) on
 * arbitrary bytes. On success every point is finite and there are at most as
 * many points as lines. */
#include "fuzz.h"

#include <math.h>

#include "ddpm/csv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file(data, size);
    float *xy;
    int n;
    if (ddpm_csv_read_points(path, &xy, &n) != DDPM_OK) {
        fuzz_check_message(ddpm_last_error());
        FUZZ_CHECK(xy == NULL && n == 0);
        return 0;
    }
    size_t lines = 1;
    for (size_t i = 0; i < size; i++) lines += data[i] == '\n';
    FUZZ_CHECK(n >= 1 && (size_t)n <= lines);
    for (int i = 0; i < 2 * n; i++) FUZZ_CHECK(isfinite(xy[i]));
    ddpm_free(xy);
    return 0;
}
