//===- trl-opt.cpp - mlir-opt with the trl dialect and passes -------------===//

#include "dialect/TrlDialect.h"
#include "passes/Pipeline.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"

int main(int argc, char **argv) {
  mlir::trl::registerTrlPipeline();
  mlir::DialectRegistry registry;
  registry.insert<mlir::trl::TrlDialect, mlir::func::FuncDialect>();
  return mlir::asMainReturnCode(
      mlir::MlirOptMain(argc, argv, "trl optimizer driver\n", registry));
}
