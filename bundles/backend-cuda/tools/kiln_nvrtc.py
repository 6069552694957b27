"""NVRTC and the driver's extended launch through ctypes, for the kernel check and timing scripts next to this file:
compiles a kernel source to a CUBIN with the options the Java side uses (dev.kiln.backend.cuda.internal.KernelCompiler),
and launches kernels with the attributes the Java side's StepRecorder gives them (programmatic dependent launch, thread
block clusters), so a script tests the kernels as the backend runs them."""
import ctypes
import glob
import os


def library():
    """libnvrtc from the CUDA toolkit's usual places, else whatever the dynamic loader finds."""
    for d in ["/usr/local/cuda/targets/x86_64-linux/lib", "/usr/local/cuda/lib64"]:
        for f in sorted(glob.glob(os.path.join(d, "libnvrtc.so.1*"))):
            return ctypes.CDLL(f)
    return ctypes.CDLL("libnvrtc.so")


def compile_cubin(source, arch, name="kernels.cu", extra=()):
    """The CUBIN of `source` for `arch` (e.g. sm_90a); `name` is what the compiler's messages call the file."""
    lib = library()
    prog = ctypes.c_void_p()
    assert lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), name.encode(), 0, None, None) == 0
    opts = [("--gpu-architecture=" + arch).encode(), b"--std=c++17"] + [o.encode() for o in extra]
    result = lib.nvrtcCompileProgram(prog, len(opts), (ctypes.c_char_p * len(opts))(*opts))
    size = ctypes.c_size_t()
    lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetProgramLog(prog, log)
    if result != 0:
        raise RuntimeError("NVRTC failed:\n" + log.value.decode())
    lib.nvrtcGetCUBINSize(prog, ctypes.byref(size))
    cubin = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetCUBIN(prog, cubin)
    return cubin.raw


class _LaunchConfig(ctypes.Structure):
    _fields_ = [("grid", ctypes.c_uint * 3), ("block", ctypes.c_uint * 3), ("shared", ctypes.c_uint),
                ("stream", ctypes.c_void_p), ("attrs", ctypes.c_void_p), ("count", ctypes.c_uint)]


class _LaunchAttribute(ctypes.Structure):  # CUlaunchAttribute: the id, padding, a 64-byte value
    _fields_ = [("id", ctypes.c_int), ("pad", ctypes.c_char * 4), ("value", ctypes.c_uint * 3),
                ("rest", ctypes.c_char * 52)]


PROGRAMMATIC_STREAM_SERIALIZATION = 6  # CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION
CLUSTER_DIMENSION = 4  # CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION
NON_PORTABLE_CLUSTER_SIZE_ALLOWED = 14  # CU_FUNC_ATTRIBUTE_NON_PORTABLE_CLUSTER_SIZE_ALLOWED
MAX_DYNAMIC_SHARED_SIZE_BYTES = 8  # CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
_driver = []


def driver():
    if not _driver:
        _driver.append(ctypes.CDLL("libcuda.so.1"))
    return _driver[0]


def handle(fn):
    """The CUfunction of a CuPy RawModule function (or RawKernel)."""
    return fn.kernel.ptr if hasattr(fn, "kernel") else fn.ptr


def launch_ex(fn, grid, block, args, shared=0, stream=0, cluster_y=1, programmatic=False):
    """cuLaunchKernelEx of a CuPy function: args are CuPy arrays (their pointers) or NumPy scalars (int32, int64,
    float32, uint64 as a raw pointer); cluster_y > 1 groups the grid's blocks along y into clusters of that many (the
    function is allowed non-portable sizes first); programmatic: a programmatic dependent launch."""
    import numpy as np
    values = []
    for a in args:
        if hasattr(a, "data") and hasattr(a.data, "ptr"):
            values.append(ctypes.c_void_p(a.data.ptr))
        elif isinstance(a, np.int32):
            values.append(ctypes.c_int(int(a)))
        elif isinstance(a, np.int64):
            values.append(ctypes.c_longlong(int(a)))
        elif isinstance(a, np.float32):
            values.append(ctypes.c_float(float(a)))
        elif isinstance(a, np.uint64):
            values.append(ctypes.c_uint64(int(a)))
        else:
            raise TypeError(f"launch argument of type {type(a)}")
    pointers = (ctypes.c_void_p * len(values))(*[ctypes.cast(ctypes.pointer(v), ctypes.c_void_p) for v in values])
    grid = tuple(grid) + (1,) * (3 - len(grid))
    attributes = []
    if programmatic:
        attributes.append(_LaunchAttribute(PROGRAMMATIC_STREAM_SERIALIZATION, b"", (ctypes.c_uint * 3)(1, 0, 0), b""))
    if cluster_y > 1:
        attributes.append(_LaunchAttribute(CLUSTER_DIMENSION, b"", (ctypes.c_uint * 3)(1, cluster_y, 1), b""))
        if cluster_y > 8:
            result = driver().cuFuncSetAttribute(ctypes.c_void_p(handle(fn)), NON_PORTABLE_CLUSTER_SIZE_ALLOWED, 1)
            if result != 0:
                raise RuntimeError(f"cuFuncSetAttribute(non-portable cluster size) = {result}")
    if shared > 48 * 1024:
        result = driver().cuFuncSetAttribute(ctypes.c_void_p(handle(fn)), MAX_DYNAMIC_SHARED_SIZE_BYTES, shared)
        if result != 0:
            raise RuntimeError(f"cuFuncSetAttribute(max dynamic shared size) = {result}")
    array = (_LaunchAttribute * max(1, len(attributes)))(*attributes)
    config = _LaunchConfig((ctypes.c_uint * 3)(*grid), (ctypes.c_uint * 3)(block, 1, 1), shared, stream,
                           ctypes.cast(array, ctypes.c_void_p) if attributes else None, len(attributes))
    result = driver().cuLaunchKernelEx(ctypes.byref(config), ctypes.c_void_p(handle(fn)), pointers, None)
    if result != 0:
        raise RuntimeError(f"cuLaunchKernelEx = {result}")
