package dev.kiln.engine.kv;

/**
 * The key of a full KV block in the prefix cache: a 64-bit hash of the block's tokens chained with the hash of the
 * block before it, so equal keys mean equal whole prefixes (vLLM's block hashing). A hit is still confirmed
 * against the stored tokens and parent hash, so a collision costs a cache miss, never a wrong answer.
 */
final class PrefixHash {
    /** The parent hash of a sequence's first block. */
    static final long ROOT = 0x6A09E667F3BCC908L;

    private PrefixHash() {}

    /** Hash of {@code tokens[from .. from + length)} chained after {@code parent}. */
    static long of(long parent, int[] tokens, int from, int length) {
        long h = parent ^ (length * 0x9E3779B97F4A7C15L);
        for (int i = from; i < from + length; i++) {
            h = (h ^ (tokens[i] & 0xFFFFFFFFL)) * 0xBF58476D1CE4E5B9L;
            h ^= h >>> 29;
        }
        // MurmurHash3's finaliser spreads the last tokens over all bits.
        h ^= h >>> 33;
        h *= 0xFF51AFD7ED558CCDL;
        h ^= h >>> 33;
        h *= 0xC4CEB9FE1A85EC53L;
        h ^= h >>> 33;
        return h;
    }
}
