package dev.kiln.backend.cuda.bindings;

/**
 * A CUDA driver, cuBLAS or NVRTC call failed.
 */
public final class CudaException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    private final int code;

    /**
     * @param call    the function that failed
     * @param code    its status code
     * @param message the library's name and description of the code
     */
    public CudaException(String call, int code, String message) {
        super(call + " failed: " + message + " (" + code + ")");
        this.code = code;
    }

    /** The status code the library returned. */
    public int code() {
        return code;
    }
}
