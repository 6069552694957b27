package dev.kiln.engine.testing;

import dev.kiln.api.attention.KvCache;
import dev.kiln.api.attention.KvCacheSpec;
import dev.kiln.api.backend.ComputeBackend;
import dev.kiln.api.model.CausalLanguageModel;
import dev.kiln.api.model.ForwardBatch;
import dev.kiln.api.model.ForwardResult;
import dev.kiln.api.model.ModelConfig;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.Proxy;

/**
 * A real model seen through another backend (tests give the engine a CPU backend that claims or counts something),
 * everything else passed through; override {@link #forward} to watch the batches the engine sends.
 */
public class DelegatingModel implements CausalLanguageModel {
    /** What a test backend does with one call: a result of its own, or {@link #DELEGATE} to the real backend. */
    @FunctionalInterface
    public interface Interception {
        Object handle(Method method, Object[] args);
    }

    /** Returned by an {@link Interception} to let the real backend answer. */
    public static final Object DELEGATE = new Object();

    private final CausalLanguageModel real;
    private final ComputeBackend backend;

    public DelegatingModel(CausalLanguageModel real, Interception interception) {
        this.real = real;
        ComputeBackend cpu = real.backend();
        this.backend = (ComputeBackend) Proxy.newProxyInstance(DelegatingModel.class.getClassLoader(),
                new Class<?>[] {ComputeBackend.class}, (proxy, method, args) -> {
                    Object own = interception.handle(method, args);
                    if (own != DELEGATE) return own;
                    try {
                        return method.invoke(cpu, args);
                    } catch (InvocationTargetException e) {
                        throw e.getCause();
                    }
                });
    }

    @Override public ModelConfig config() { return real.config(); }
    @Override public String architecture() { return real.architecture(); }
    @Override public ComputeBackend backend() { return backend; }
    @Override public int vocabSize() { return real.vocabSize(); }
    @Override public int hiddenSize() { return real.hiddenSize(); }
    @Override public long weightBytes() { return real.weightBytes(); }
    @Override public long weightBytesPerToken() { return real.weightBytesPerToken(); }
    @Override public KvCacheSpec kvCacheSpec() { return real.kvCacheSpec(); }
    @Override public KvCache allocateKvCache(int numBlocks, int blockSize) { return real.allocateKvCache(numBlocks, blockSize); }
    @Override public ForwardResult forward(ForwardBatch batch, KvCache cache) { return real.forward(batch, cache); }
    @Override public boolean acceptsPendingTokens() { return real.acceptsPendingTokens(); }
    @Override public int maxBatchTokens() { return real.maxBatchTokens(); }
    @Override public void close() { real.close(); }
}
