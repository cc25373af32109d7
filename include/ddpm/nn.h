/* nn.h: every layer of the network, one header each. */
#ifndef DDPM_NN_H
#define DDPM_NN_H

#include "ddpm/act.h"
#include "ddpm/attn.h"
#include "ddpm/conv.h"
#include "ddpm/embed.h"
#include "ddpm/linear.h"
#include "ddpm/loss.h"
#include "ddpm/norm.h"
#include "ddpm/resample.h"

#endif
