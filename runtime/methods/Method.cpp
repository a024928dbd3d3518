//===- Method.cpp - the methods the runtime trains ------------------------===//

#include "trlc/Method.h"
#include "trlc/Run.h"

namespace trlc {

std::unique_ptr<Method> makeMethod(const artifact::Artifact &artifact) {
  const std::string &name = artifact.manifest.method;
  if (name == "sft")
    return makeSft(artifact);
  throw RunError(artifact.dir + ": error: trlc run trains SFT artifacts; " + name +
                 " needs the data pipeline's preference batches, which is not built yet");
}

} // namespace trlc
