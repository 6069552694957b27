package dev.kiln.console.engine;

import dev.kiln.api.checkpoint.Checkpoint;
import dev.kiln.api.checkpoint.CheckpointLoader;
import dev.kiln.api.checkpoint.CheckpointTensor;
import java.nio.file.Path;
import java.util.Collection;
import java.util.Map;
import java.util.OptionalLong;
import java.util.concurrent.ConcurrentHashMap;
import org.osgi.framework.BundleContext;
import org.osgi.framework.ServiceReference;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The parameter count of a checkpoint, which the engine does not report: the elements of every tensor in the
 * folder, read from the tensor headers through a registered {@link CheckpointLoader} (the data stays unread),
 * except quantization scales, which are not parameters. Counted once per folder.
 */
public final class ModelFacts {
    private static final Logger LOG = LoggerFactory.getLogger(ModelFacts.class);

    private final BundleContext context;
    private final Map<Path, Long> parameters = new ConcurrentHashMap<>();

    public ModelFacts(BundleContext context) {
        this.context = context;
    }

    /** The folder's parameter count, or empty when no loader can open it (the count is then retried later). */
    public OptionalLong parameters(Path folder) {
        Long known = parameters.get(folder);
        if (known != null) return OptionalLong.of(known);
        OptionalLong counted = count(folder);
        counted.ifPresent(n -> parameters.put(folder, n));
        return counted;
    }

    private OptionalLong count(Path folder) {
        Collection<ServiceReference<CheckpointLoader>> refs;
        try {
            refs = context.getServiceReferences(CheckpointLoader.class, null);
        } catch (org.osgi.framework.InvalidSyntaxException e) {
            throw new IllegalStateException(e);
        }
        for (ServiceReference<CheckpointLoader> ref : refs) {
            CheckpointLoader loader = context.getService(ref);
            if (loader == null) continue;
            try {
                if (!loader.canLoad(folder)) continue;
                try (Checkpoint checkpoint = loader.open(folder)) {
                    long total = 0;
                    for (String name : checkpoint.tensorNames()) {
                        if (isScale(name)) continue;
                        total += checkpoint.find(name).map(CheckpointTensor::size).orElse(0L);
                    }
                    return OptionalLong.of(total);
                }
            } catch (Exception e) {
                LOG.debug("cannot count the parameters of {}: {}", folder, e.getMessage());
            } finally {
                context.ungetService(ref);
            }
        }
        return OptionalLong.empty();
    }

    /** Block scales of FP8 checkpoints and AWQ/GPTQ companions describe weights; they are not parameters. */
    static boolean isScale(String tensorName) {
        return tensorName.endsWith("_scale_inv") || tensorName.endsWith(".weight_scale") || tensorName.endsWith(".input_scale")
                || tensorName.endsWith(".scales") || tensorName.endsWith(".qzeros") || tensorName.endsWith(".g_idx");
    }
}
