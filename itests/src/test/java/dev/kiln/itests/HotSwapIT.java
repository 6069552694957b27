package dev.kiln.itests;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;
import static org.ops4j.pax.exam.CoreOptions.streamBundle;
import static org.ops4j.pax.tinybundles.TinyBundles.bndBuilder;

import dev.kiln.itests.hotswap.FallbackSampler;
import dev.kiln.itests.hotswap.PrimarySampler;
import dev.kiln.itests.hotswap.SamplerConsumer;
import java.util.Collection;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.Supplier;
import javax.inject.Inject;
import org.junit.Test;
import org.junit.runner.RunWith;
import org.ops4j.pax.exam.Configuration;
import org.ops4j.pax.exam.Option;
import org.ops4j.pax.exam.junit.PaxExam;
import org.ops4j.pax.exam.spi.reactors.ExamReactorStrategy;
import org.ops4j.pax.exam.spi.reactors.PerClass;
import org.ops4j.pax.tinybundles.TinyBundles;
import org.osgi.framework.Bundle;
import org.osgi.framework.BundleContext;
import org.osgi.framework.ServiceReference;

/**
 * The mechanism behind swapping a decoder or kernel at runtime: two bundles offer the same service, the consumer
 * uses the higher-ranked one, and stopping that bundle rebinds the consumer to the other without re-creating it
 * and without one failed call, while calls run continuously; restarting it swaps back.
 */
@RunWith(PaxExam.class)
@ExamReactorStrategy(PerClass.class)
public class HotSwapIT {
    private static final String PRIMARY = "dev.kiln.itests.sampler.primary";

    @Inject
    private BundleContext context;

    @Configuration
    public Option[] configuration() {
        return new Option[] {
            KilnContainer.feature("core"),
            streamBundle(TinyBundles.bundle().symbolicName("dev.kiln.itests.sampler.consumer").addClass(SamplerConsumer.class).build(bndBuilder())),
            streamBundle(TinyBundles.bundle().symbolicName("dev.kiln.itests.sampler.fallback").addClass(FallbackSampler.class).build(bndBuilder())),
            streamBundle(TinyBundles.bundle().symbolicName(PRIMARY).addClass(PrimarySampler.class).build(bndBuilder())),
        };
    }

    @Test
    public void stoppingTheHigherRankedProviderRebindsWithoutAFailedCall() throws Exception {
        Supplier<String> consumer = consumer();
        String first = awaitAnswer(consumer, PrimarySampler.TOKEN);
        String instance = first.split(":")[0];

        AtomicLong calls = new AtomicLong();
        AtomicReference<Throwable> failure = new AtomicReference<>();
        Thread caller = Thread.ofPlatform().start(() -> {
            while (!Thread.currentThread().isInterrupted() && failure.get() == null) {
                try {
                    String answer = consumer.get();
                    if (!answer.startsWith(instance + ":")) throw new AssertionError("consumer re-created: " + answer);
                    calls.incrementAndGet();
                } catch (Throwable t) {
                    failure.set(t);
                }
            }
        });
        try {
            Bundle primary = installed(PRIMARY);
            primary.stop();
            awaitAnswer(consumer, FallbackSampler.TOKEN);
            long during = calls.get();
            primary.start();
            awaitAnswer(consumer, PrimarySampler.TOKEN);
            long deadline = System.nanoTime() + 10_000_000_000L;
            while (calls.get() <= during && System.nanoTime() < deadline) Thread.sleep(10);
            assertTrue("calls kept running across both swaps", calls.get() > during);
        } finally {
            caller.interrupt();
            caller.join(5000);
        }
        if (failure.get() != null) throw new AssertionError("a call failed during the swap", failure.get());
        assertTrue(calls.get() > 0);
        assertEquals("the consumer was never re-created", instance, consumer.get().split(":")[0]);
    }

    @SuppressWarnings("unchecked")
    private Supplier<String> consumer() throws Exception {
        long deadline = System.nanoTime() + 10_000_000_000L;
        while (System.nanoTime() < deadline) {
            Collection<ServiceReference<Supplier>> refs = context.getServiceReferences(Supplier.class, "(kiln.test=hotswap)");
            if (!refs.isEmpty()) return context.getService(refs.iterator().next());
            Thread.sleep(50);
        }
        throw new AssertionError("the consumer component never registered");
    }

    private static String awaitAnswer(Supplier<String> consumer, int token) throws InterruptedException {
        long deadline = System.nanoTime() + 10_000_000_000L;
        String last = null;
        while (System.nanoTime() < deadline) {
            last = consumer.get();
            if (last.endsWith(":" + token)) return last;
            Thread.sleep(10);
        }
        throw new AssertionError("expected token " + token + ", consumer still answers " + last);
    }

    private Bundle installed(String symbolicName) {
        for (Bundle b : context.getBundles()) if (b.getSymbolicName().equals(symbolicName)) return b;
        throw new AssertionError(symbolicName + " not installed");
    }
}
