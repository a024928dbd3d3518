// The host emulation stands in for <cuda_runtime.h> (see emu.h).
#include "emu.h"
