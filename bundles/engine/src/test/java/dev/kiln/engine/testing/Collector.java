package dev.kiln.engine.testing;

import dev.kiln.api.engine.FinishReason;
import dev.kiln.api.engine.TokenEvent;
import dev.kiln.api.engine.TokenListener;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/**
 * A listener that records a request's events and checks the listener contract as it goes: nothing after the
 * terminal call, exactly one terminal call.
 */
public class Collector implements TokenListener {
    private final List<TokenEvent> events = new ArrayList<>();
    private final List<Integer> tokens = new ArrayList<>();
    private final CountDownLatch done = new CountDownLatch(1);
    private volatile FinishReason finish;
    private volatile Throwable error;
    private volatile String violation;

    @Override
    public synchronized void onTokens(TokenEvent event) {
        if (done.getCount() == 0) violation = "event after the terminal call: " + event;
        events.add(event);
        for (int t : event.tokens()) tokens.add(t);
        if (event.finish() != null) {
            finish = event.finish();
            done.countDown();
        }
    }

    @Override
    public synchronized void onError(Throwable failure) {
        if (done.getCount() == 0) violation = "onError after the terminal call: " + failure;
        error = failure;
        done.countDown();
    }

    /** Waits for the terminal call and returns this collector. */
    public Collector await() {
        try {
            if (!done.await(60, TimeUnit.SECONDS)) throw new AssertionError("no terminal call within 60 s");
        } catch (InterruptedException e) {
            throw new AssertionError(e);
        }
        if (violation != null) throw new AssertionError(violation);
        return this;
    }

    public boolean isDone() {
        return done.getCount() == 0;
    }

    public synchronized int[] tokens() {
        return tokens.stream().mapToInt(Integer::intValue).toArray();
    }

    public synchronized List<TokenEvent> events() {
        return List.copyOf(events);
    }

    public FinishReason finish() {
        return finish;
    }

    public Throwable error() {
        return error;
    }

    public String violation() {
        return violation;
    }
}
