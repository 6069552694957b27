package dev.kiln.engine;

/**
 * How an engine is sized, with vLLM's names for the same knobs.
 *
 * @param servedModelName     the model id reported to clients, or null for the model folder's name
 * @param location            where the model was loaded from (reported only), or null
 * @param blockSize           token slots per KV cache block
 * @param kvCacheMemory       bytes of KV cache, or 0 for {@link #DEFAULT_KV_CACHE_MEMORY} or less: what
 *                            {@code maxNumSeqs} sequences of the model's full context need, when that is smaller
 * @param maxNumSeqs          the most sequences in the running batch
 * @param maxNumBatchedTokens the most tokens in one forward step (longer prompts are prefilled in chunks)
 * @param maxWaiting          the most requests queued for admission; more are refused
 * @param maxModelLen         the longest sequence (prompt + output), or 0 for the model's
 *                            {@code max_position_embeddings} capped by what the KV cache holds
 */
public record EngineSettings(String servedModelName, String location, int blockSize, long kvCacheMemory,
                             int maxNumSeqs, int maxNumBatchedTokens, int maxWaiting, int maxModelLen) {
    /** Default tokens per block. */
    public static final int DEFAULT_BLOCK_SIZE = 16;
    /** Default and largest automatic KV cache size: 1 GiB. */
    public static final long DEFAULT_KV_CACHE_MEMORY = 1L << 30;
    /** Default running batch size. */
    public static final int DEFAULT_MAX_NUM_SEQS = 64;
    /** Default token budget per step. */
    public static final int DEFAULT_MAX_NUM_BATCHED_TOKENS = 512;
    /** Default waiting queue bound. */
    public static final int DEFAULT_MAX_WAITING = 256;

    public EngineSettings {
        if (blockSize < 1) throw new IllegalArgumentException("block-size must be positive, got " + blockSize);
        if (kvCacheMemory < 0) throw new IllegalArgumentException("kv-cache-memory must be >= 0, got " + kvCacheMemory);
        if (maxNumSeqs < 1) throw new IllegalArgumentException("max-num-seqs must be positive, got " + maxNumSeqs);
        if (maxNumBatchedTokens < 1) {
            throw new IllegalArgumentException("max-num-batched-tokens must be positive, got " + maxNumBatchedTokens);
        }
        if (maxWaiting < 0) throw new IllegalArgumentException("max-waiting must be >= 0, got " + maxWaiting);
        if (maxModelLen < 0) throw new IllegalArgumentException("max-model-len must be >= 0, got " + maxModelLen);
    }

    /** The defaults: blocks of 16, automatic cache size, 64 sequences, 512 tokens per step, 256 waiting. */
    public static EngineSettings defaults() {
        return new EngineSettings(null, null, DEFAULT_BLOCK_SIZE, 0, DEFAULT_MAX_NUM_SEQS,
                DEFAULT_MAX_NUM_BATCHED_TOKENS, DEFAULT_MAX_WAITING, 0);
    }

    public EngineSettings withServedModelName(String name) {
        return new EngineSettings(name, location, blockSize, kvCacheMemory, maxNumSeqs, maxNumBatchedTokens, maxWaiting, maxModelLen);
    }

    public EngineSettings withLocation(String folder) {
        return new EngineSettings(servedModelName, folder, blockSize, kvCacheMemory, maxNumSeqs, maxNumBatchedTokens, maxWaiting, maxModelLen);
    }

    public EngineSettings withBlockSize(int tokens) {
        return new EngineSettings(servedModelName, location, tokens, kvCacheMemory, maxNumSeqs, maxNumBatchedTokens, maxWaiting, maxModelLen);
    }

    public EngineSettings withKvCacheMemory(long bytes) {
        return new EngineSettings(servedModelName, location, blockSize, bytes, maxNumSeqs, maxNumBatchedTokens, maxWaiting, maxModelLen);
    }

    public EngineSettings withMaxNumSeqs(int sequences) {
        return new EngineSettings(servedModelName, location, blockSize, kvCacheMemory, sequences, maxNumBatchedTokens, maxWaiting, maxModelLen);
    }

    public EngineSettings withMaxNumBatchedTokens(int tokens) {
        return new EngineSettings(servedModelName, location, blockSize, kvCacheMemory, maxNumSeqs, tokens, maxWaiting, maxModelLen);
    }

    public EngineSettings withMaxWaiting(int requests) {
        return new EngineSettings(servedModelName, location, blockSize, kvCacheMemory, maxNumSeqs, maxNumBatchedTokens, requests, maxModelLen);
    }

    public EngineSettings withMaxModelLen(int tokens) {
        return new EngineSettings(servedModelName, location, blockSize, kvCacheMemory, maxNumSeqs, maxNumBatchedTokens, maxWaiting, tokens);
    }
}
