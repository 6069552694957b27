package dev.kiln.backend.cuda.bindings;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_FLOAT;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;

/**
 * cuBLAS ({@code libcublas.so.13}) through FFM: handle management and {@code cublasGemmEx}, the mixed-precision
 * GEMM (bf16 or f32 operands, f32 accumulation and output). Matrices are column-major, as cuBLAS sees them.
 */
public final class Cublas {
    /** {@code CUBLAS_OP_N}. */
    public static final int OP_N = 0;
    /** {@code CUBLAS_OP_T}. */
    public static final int OP_T = 1;
    /** {@code CUDA_R_32F}. */
    public static final int R_32F = 0;
    /** {@code CUDA_R_16BF}. */
    public static final int R_16BF = 14;
    /** {@code CUBLAS_COMPUTE_32F}: f32 accumulation; f32 operands are not rounded to TF32. */
    public static final int COMPUTE_32F = 68;
    /** {@code CUBLAS_GEMM_DEFAULT}. */
    public static final int GEMM_DEFAULT = -1;

    private final MethodHandle cublasCreate;
    private final MethodHandle cublasDestroy;
    private final MethodHandle cublasSetStream;
    private final MethodHandle cublasGemmEx;
    private final MethodHandle cublasGetStatusString;
    private final MemorySegment one;
    private final MemorySegment zero;

    private Cublas(NativeLibraries.OpenedLibrary lib) {
        cublasCreate = lib.function("cublasCreate_v2", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        cublasDestroy = lib.function("cublasDestroy_v2", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        cublasSetStream = lib.function("cublasSetStream_v2", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));
        cublasGemmEx = lib.function("cublasGemmEx", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT,
                JAVA_INT, JAVA_INT, JAVA_INT, ADDRESS, JAVA_LONG, JAVA_INT, JAVA_INT, JAVA_LONG, JAVA_INT, JAVA_INT,
                ADDRESS, JAVA_LONG, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT));
        cublasGetStatusString = lib.function("cublasGetStatusString", FunctionDescriptor.of(ADDRESS, JAVA_INT));
        one = Arena.global().allocateFrom(JAVA_FLOAT, 1f);
        zero = Arena.global().allocateFrom(JAVA_FLOAT, 0f);
    }

    /**
     * Opens cuBLAS; its companion {@code libcublasLt.so.13} is opened first so that the loader resolves cuBLAS's
     * dependency on it wherever it was found.
     *
     * @throws LibraryNotFoundException if either library or a function is missing
     */
    public static Cublas load() {
        NativeLibraries.open("libcublasLt.so.13");
        return new Cublas(NativeLibraries.open("libcublas.so.13"));
    }

    /** Creates a handle in the calling thread's current context. */
    public MemorySegment create() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(ADDRESS);
            check("cublasCreate", CudaDriver.call(() -> (int) cublasCreate.invokeExact(out)));
            return out.get(ADDRESS, 0);
        }
    }

    /** Destroys a handle. */
    public void destroy(MemorySegment handle) {
        check("cublasDestroy", CudaDriver.call(() -> (int) cublasDestroy.invokeExact(handle)));
    }

    /** Makes the handle's work go to a stream. */
    public void setStream(MemorySegment handle, MemorySegment stream) {
        check("cublasSetStream", CudaDriver.call(() -> (int) cublasSetStream.invokeExact(handle, stream)));
    }

    /**
     * {@code C = op(A) · op(B) + beta · C} with f32 accumulation, column-major, alpha 1 and beta 0 or 1.
     *
     * @param accumulate whether beta is 1 (add to C) rather than 0
     */
    public void gemm(MemorySegment handle, int transA, int transB, int m, int n, int k, long a, int aType, int lda,
                     long b, int bType, int ldb, boolean accumulate, long c, int ldc) {
        MemorySegment beta = accumulate ? one : zero;
        int result = CudaDriver.call(() -> (int) cublasGemmEx.invokeExact(handle, transA, transB, m, n, k, one, a, aType,
                lda, b, bType, ldb, beta, c, R_32F, ldc, COMPUTE_32F, GEMM_DEFAULT));
        check("cublasGemmEx(" + m + "x" + n + "x" + k + ")", result);
    }

    private void check(String call, int status) {
        if (status == 0) return;
        String text;
        try {
            text = ((MemorySegment) cublasGetStatusString.invokeExact(status)).reinterpret(256).getString(0);
        } catch (Throwable t) {
            text = "cuBLAS status";
        }
        throw new CudaException(call, status, text);
    }
}
