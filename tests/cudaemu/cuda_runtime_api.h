// The host emulation stands in for <cuda_runtime_api.h> (see emu.h).
#include "emu.h"
