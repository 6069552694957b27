package dev.kiln.itests.hotswap;

import dev.kiln.api.sampling.Sampler;
import java.util.function.Supplier;
import org.osgi.service.component.annotations.Component;
import org.osgi.service.component.annotations.Reference;
import org.osgi.service.component.annotations.ReferenceCardinality;
import org.osgi.service.component.annotations.ReferencePolicy;
import org.osgi.service.component.annotations.ReferencePolicyOption;

/**
 * Consumes whichever sampler ranks highest, the way the engine binds its swappable services: an optional,
 * dynamic, greedy reference, so a better provider is taken as soon as it appears and a departing one is replaced
 * without deactivating this component. Offered as a {@code Supplier<String>} ("instance:token") so the test needs
 * no class of this bundle.
 */
@Component(service = Supplier.class, property = "kiln.test=hotswap")
public class SamplerConsumer implements Supplier<String> {
    @Reference(cardinality = ReferenceCardinality.OPTIONAL, policy = ReferencePolicy.DYNAMIC,
            policyOption = ReferencePolicyOption.GREEDY)
    private volatile Sampler sampler;

    @Override
    public String get() {
        Sampler current = sampler;
        if (current == null) throw new IllegalStateException("no sampler bound");
        return System.identityHashCode(this) + ":" + current.sample(new float[1], null, null);
    }
}
