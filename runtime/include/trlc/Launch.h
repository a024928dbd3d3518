//===- Launch.h - the processes of a run ------------------------*- C++ -*-===//

#ifndef TRLC_RUNTIME_LAUNCH_H
#define TRLC_RUNTIME_LAUNCH_H

#include "trlc/Run.h"

namespace trlc {

/// `--nproc N`: starts N copies of this program as ranks 0..N-1 of one
/// data-parallel run (the torchrun variables plus a rendezvous directory),
/// waits, and stops the others as soon as one fails. Returns the exit code.
int launchRanks(const RunOptions &options);

/// OpenMP threads that spin after a parallel loop take the cores OpenBLAS's
/// threads need for the next matrix product (steps run 1.5x slower on two
/// cores). libgomp reads OMP_WAIT_POLICY before main, so when it is unset
/// this sets it to PASSIVE and re-executes the process; an explicit setting
/// is left alone, and if re-executing fails the run goes on as it is.
void preferPassiveOpenMP(char **argv);

} // namespace trlc

#endif // TRLC_RUNTIME_LAUNCH_H
