/* folder.h: what was the CLI side of image folders now lives in the data
 * front (ddpm/datasource.h) and cli.h; kept only for the commands that
 * still include it (cmd_info.c, cmd_sample.c): delete with those lines. */
#include "cli.h"
