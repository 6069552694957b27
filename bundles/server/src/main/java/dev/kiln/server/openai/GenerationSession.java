package dev.kiln.server.openai;

import dev.kiln.api.engine.EngineOverloadedException;
import dev.kiln.api.engine.FinishReason;
import dev.kiln.api.engine.GenerationHandle;
import dev.kiln.api.engine.GenerationRequest;
import dev.kiln.api.engine.InferenceEngine;
import dev.kiln.api.engine.TokenEvent;
import dev.kiln.api.engine.TokenListener;
import dev.kiln.server.prometheus.RequestMetrics.Finish;
import dev.kiln.server.prometheus.RequestTimer;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

/**
 * The engine requests behind one API call (one per choice), with their events funnelled into one queue that the
 * request's thread drains: the engine thread only enqueues, so a slow client never stalls the engine. Closing the
 * session cancels whatever is still running, which frees the sequences' KV blocks when a client disconnects.
 *
 * <p>Each event carries the time the engine produced it, and the session reports every choice's first token,
 * later token events and end to the call's {@link RequestTimer} (if metrics are collected).
 */
final class GenerationSession implements AutoCloseable {
    /** An event of choice {@code index}, or its failure, produced at {@code nanos} ({@link System#nanoTime()}). */
    record ChoiceEvent(int index, TokenEvent event, Throwable error, long nanos) {
        boolean terminal() {
            return error != null || event.finish() != null;
        }
    }

    private final BlockingQueue<ChoiceEvent> events = new LinkedBlockingQueue<>();
    private final List<GenerationHandle> handles = new ArrayList<>();
    private final RequestTimer timer;
    private int open;

    /** @param timer times the requests for the server's metrics, or null */
    GenerationSession(InferenceEngine engine, List<GenerationRequest> requests, RequestTimer timer) {
        this.timer = timer;
        try {
            for (int i = 0; i < requests.size(); i++) {
                final int index = i;
                handles.add(engine.submit(requests.get(i), new TokenListener() {
                    @Override
                    public void onTokens(TokenEvent event) {
                        events.add(new ChoiceEvent(index, event, null, System.nanoTime()));
                    }

                    @Override
                    public void onError(Throwable error) {
                        events.add(new ChoiceEvent(index, null, error, System.nanoTime()));
                    }
                }));
                open++;
            }
            // Only requests the engine accepted are timed: a refused call (429, 400) is no finished request.
            if (timer != null) timer.choices(requests.size());
        } catch (EngineOverloadedException e) {
            close();
            throw ApiException.overloaded(e.getMessage());
        } catch (IllegalArgumentException e) {
            close();
            throw ApiException.invalid(null, e.getMessage());
        } catch (IllegalStateException e) {
            close();
            throw ApiException.unavailable(e.getMessage());
        } catch (RuntimeException e) {
            close();
            throw e;
        }
    }

    /** The next event, or null when every choice has ended. */
    ChoiceEvent next() throws InterruptedException {
        while (open > 0) {
            ChoiceEvent e = events.poll(1, TimeUnit.SECONDS);
            if (e == null) continue;
            if (e.terminal()) open--;
            if (timer != null) time(e);
            return e;
        }
        return null;
    }

    private void time(ChoiceEvent e) {
        if (e.error() != null) {
            timer.finished(e.index(), Finish.ERROR, e.nanos());
            return;
        }
        timer.tokens(e.index(), e.event().tokens().length, e.nanos());
        FinishReason reason = e.event().finish();
        if (reason != null) {
            timer.finished(e.index(), switch (reason) {
                case STOP -> Finish.STOP;
                case LENGTH -> Finish.LENGTH;
                case CANCELLED -> Finish.ABORT;
                case ERROR -> Finish.ERROR;
            }, e.nanos());
        }
    }

    /** Ends one choice early (a stop string was found); its remaining events are ignored by the caller. */
    void cancel(int index) {
        if (timer != null) timer.finished(index, Finish.STOP, System.nanoTime());
        handles.get(index).cancel();
    }

    @Override
    public void close() {
        // Choices still open here were abandoned: the client went away, or the call failed.
        if (timer != null) timer.abortOpen(System.nanoTime());
        for (GenerationHandle h : handles) {
            if (!h.isDone()) h.cancel();
        }
    }
}
