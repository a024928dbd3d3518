//===- KernelTableTest.cpp - the dialect and the kernel table agree -------===//
//
// Every `trl` op the lowering turns into a kernel call names a kernel of
// runtime/include/trlc/Kernels.def, and every kernel there is some op's:
// adding an op or a kernel on one side only fails here, not at run time.
//
//===----------------------------------------------------------------------===//

#include "dialect/TrlDialect.h"
#include "trlc/Kernels.h"

#include "mlir/IR/MLIRContext.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

namespace {

// Ops that are not kernel calls: parameters and views (tensors of the
// plan), offload/reload (lowered to `copy`), and ops no pass of this
// pipeline leaves for the lowering.
const std::set<std::string> kNotKernels = {"param",  "reshape",   "flat_view",
                                           "offload", "reload",   "recompute",
                                           "yield",  "broadcast"};

std::set<std::string> trlOps() {
  mlir::MLIRContext context;
  context.loadDialect<mlir::trl::TrlDialect>();
  std::set<std::string> ops;
  for (mlir::RegisteredOperationName op : context.getRegisteredOperations())
    if (op.getDialectNamespace() == "trl")
      ops.insert(op.getStringRef().drop_front(4).str());
  return ops;
}

TEST(KernelTable, EveryLoweredOpHasAKernel) {
  std::set<std::string> ops = trlOps();
  ASSERT_GT(ops.size(), 40u);
  for (const std::string &op : ops)
    if (!kNotKernels.count(op))
      EXPECT_TRUE(trlc::kernelByName(op)) << "trl." << op << " has no kernel";
}

TEST(KernelTable, EveryKernelIsAnOp) {
  std::set<std::string> ops = trlOps();
  for (int k = 0; k < trlc::kKernels; ++k) {
    auto kernel = static_cast<trlc::Kernel>(k);
    std::string name = trlc::kernelName(kernel);
    EXPECT_EQ(trlc::kernelByName(name), kernel);
    if (kernel != trlc::Kernel::Copy) // offload, reload, state updates
      EXPECT_TRUE(ops.count(name)) << "kernel " << name << " has no trl op";
  }
}

} // namespace
