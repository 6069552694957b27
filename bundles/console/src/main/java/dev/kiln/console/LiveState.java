package dev.kiln.console;

import dev.kiln.api.engine.EngineStats;
import dev.kiln.api.engine.ModelDescription;
import java.util.Optional;
import java.util.OptionalLong;

/**
 * The latest reading the sampler took, which the page and the JSON endpoint show: the model (if one is loaded)
 * with its parameter count, and the engine's statistics.
 */
record LiveState(Optional<ModelDescription> model, OptionalLong parameters, EngineStats stats, boolean engineBound) {
    static final EngineStats NO_STATS = new EngineStats(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    static final LiveState EMPTY = new LiveState(Optional.empty(), OptionalLong.empty(), NO_STATS, false);

    double kvUsage() {
        return stats.kvBlocksTotal() == 0 ? 0 : (double) stats.kvBlocksUsed() / stats.kvBlocksTotal();
    }

    double prefixHitRate() {
        return stats.prefixCacheQueries() == 0 ? Double.NaN : (double) stats.prefixCacheHits() / stats.prefixCacheQueries();
    }

    double acceptanceRate() {
        return stats.draftTokensProposed() == 0 ? Double.NaN : (double) stats.draftTokensAccepted() / stats.draftTokensProposed();
    }
}
