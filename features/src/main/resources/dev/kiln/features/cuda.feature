# NVIDIA GPUs through the Java FFM API (driver, cuBLAS, NVRTC). Without a GPU the bundle stays inactive and says
# so in one log line; the CPU backend serves.
include cpu
bundle dev.kiln:kiln-backend-cuda
