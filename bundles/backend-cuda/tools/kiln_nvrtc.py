"""NVRTC through ctypes, for the kernel check and timing scripts next to this file: compiles a kernel source to a
CUBIN with the options the Java side uses (dev.kiln.backend.cuda.internal.KernelCompiler), so a script tests the
kernels as the backend runs them."""
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
