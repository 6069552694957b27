# Inference on the CPU: checkpoint loading, the Vector API backend, paged attention, the architectures,
# sampling, the engine and its speculative proposers.
include core
bundle dev.kiln:kiln-loader-safetensors
bundle dev.kiln:kiln-backend-cpu
bundle dev.kiln:kiln-attention-paged
bundle dev.kiln:kiln-quant-fp8
bundle dev.kiln:kiln-quant-cpu
bundle dev.kiln:kiln-quant-int8
bundle dev.kiln:kiln-quant-int4
bundle dev.kiln:kiln-quant-awq
bundle dev.kiln:kiln-models
bundle dev.kiln:kiln-sampler
bundle dev.kiln:kiln-engine
bundle dev.kiln:kiln-spec-reference
bundle dev.kiln:kiln-spec-draft
bundle dev.kiln:kiln-spec-mtp
