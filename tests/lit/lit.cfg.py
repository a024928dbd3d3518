import os
import lit.formats

config.name = "trlc"
config.test_format = lit.formats.ShTest(execute_external=False)
config.suffixes = [".mlir", ".test"]
config.excludes = ["Inputs"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.trlc_obj_root, "tests", "lit")

config.environment["PATH"] = os.pathsep.join(
    [config.trlc_tools_dir, config.environment.get("PATH", os.environ["PATH"])])
config.substitutions.append(("%src_root", config.trlc_src_root))
config.substitutions.append(("FileCheck", config.filecheck))
config.substitutions.append(("%python", config.python))
if config.have_gloo == "ON":
    config.available_features.add("gloo")
# "sanitize": make test-sanitize's build (its floating point differs, so
# trajectories do too).
if config.sanitize:
    config.available_features.add("sanitize")
# "cuda-gpu": the CUDA backend is built and a GPU is visible.
if config.have_cuda == "ON":
    import shutil, subprocess
    smi = shutil.which("nvidia-smi")
    if smi and subprocess.run([smi, "-L"], capture_output=True).returncode == 0:
        config.available_features.add("cuda-gpu")
# TRLC_GUARD_DEVICE_MEMORY=1 lit ...: every CPU run keeps its arena out of
# the host's reach, as a GPU's is (see runtime/cpu/CpuKernels.cpp).
if os.environ.get("TRLC_GUARD_DEVICE_MEMORY"):
    config.environment["TRLC_GUARD_DEVICE_MEMORY"] = os.environ["TRLC_GUARD_DEVICE_MEMORY"]
