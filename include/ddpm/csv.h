/* csv.h: 2-D points from a text file of "x,y" lines (ddpm toy --data FILE.csv).
 *
 * One point per line: at least two comma-separated numbers (columns after
 * the second are ignored), surrounding spaces allowed, blank lines skipped,
 * "\r\n" line ends accepted. The first non-blank line may be a header: it is
 * skipped when its first field is not a number. Every other line must hold
 * two finite numbers. Failures return a one-line message naming the file and,
 * where there is one, the line (1-based):
 *
 *     cannot open 'pts.csv': No such file or directory
 *     'pts.csv': empty file (no points)
 *     'pts.csv' line 3: 'abc' is not a number
 *     'pts.csv' line 4: non-finite value 'inf'
 *     'pts.csv' line 5: 1 column, need at least 2 (x,y)
 * The file's size and line count are checked before anything is allocated
 * for the points.
 */
#ifndef DDPM_CSV_H
#define DDPM_CSV_H

#include "ddpm/common.h"

#define DDPM_CSV_MAX_BYTES ((long long)1 << 30) /* larger files are refused */
#define DDPM_CSV_MAX_LINES (1 << 24)             /* so are files of more lines */

/* Reads the points into *xy (malloc'ed [n, 2] floats, freed with ddpm_free)
 * and *n >= 1. On failure *xy = NULL, *n = 0. */
ddpm_status ddpm_csv_read_points(const char *path, float **xy, int *n);

#endif
