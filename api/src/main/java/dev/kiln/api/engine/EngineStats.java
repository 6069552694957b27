package dev.kiln.api.engine;

/**
 * A snapshot of the engine's state and counters since start.
 *
 * @param running               sequences in the running batch
 * @param waiting               requests queued for admission
 * @param kvBlocksUsed          KV cache blocks in use
 * @param kvBlocksTotal         KV cache blocks in all
 * @param prefixCacheQueries    prompt tokens looked up in the prefix cache
 * @param prefixCacheHits       of those, tokens found cached
 * @param promptTokens          prompt tokens computed
 * @param generationTokens      tokens generated
 * @param draftTokensProposed   speculative tokens proposed
 * @param draftTokensAccepted   speculative tokens accepted
 * @param requestsFinished      requests finished, any reason
 */
public record EngineStats(int running, int waiting, int kvBlocksUsed, int kvBlocksTotal, long prefixCacheQueries,
                          long prefixCacheHits, long promptTokens, long generationTokens, long draftTokensProposed,
                          long draftTokensAccepted, long requestsFinished) {}
