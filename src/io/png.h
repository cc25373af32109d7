/* png.h (internal): the atomic PNG writer shared by image.c and plot.c. */
#ifndef DDPM_IO_PNG_H
#define DDPM_IO_PNG_H

#include <stdint.h>

#include "ddpm/common.h"

/* Writes pixels (h, w, comp) u8, rows w * comp bytes apart, to path
 * atomically (temporary file + rename). */
ddpm_status ddpm_png_write(const char *path, const uint8_t *pixels, int w, int h, int comp);

#endif
