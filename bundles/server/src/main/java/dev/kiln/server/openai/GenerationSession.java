package dev.kiln.server.openai;

import dev.kiln.api.engine.EngineOverloadedException;
import dev.kiln.api.engine.GenerationHandle;
import dev.kiln.api.engine.GenerationRequest;
import dev.kiln.api.engine.InferenceEngine;
import dev.kiln.api.engine.TokenEvent;
import dev.kiln.api.engine.TokenListener;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

/**
 * The engine requests behind one API call (one per choice), with their events funnelled into one queue that the
 * request's thread drains: the engine thread only enqueues, so a slow client never stalls the engine. Closing the
 * session cancels whatever is still running, which frees the sequences' KV blocks when a client disconnects.
 */
final class GenerationSession implements AutoCloseable {
    /** An event of choice {@code index}, or its failure. */
    record ChoiceEvent(int index, TokenEvent event, Throwable error) {
        boolean terminal() {
            return error != null || event.finish() != null;
        }
    }

    private final BlockingQueue<ChoiceEvent> events = new LinkedBlockingQueue<>();
    private final List<GenerationHandle> handles = new ArrayList<>();
    private int open;

    GenerationSession(InferenceEngine engine, List<GenerationRequest> requests) {
        try {
            for (int i = 0; i < requests.size(); i++) {
                final int index = i;
                handles.add(engine.submit(requests.get(i), new TokenListener() {
                    @Override
                    public void onTokens(TokenEvent event) {
                        events.add(new ChoiceEvent(index, event, null));
                    }

                    @Override
                    public void onError(Throwable error) {
                        events.add(new ChoiceEvent(index, null, error));
                    }
                }));
                open++;
            }
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
            return e;
        }
        return null;
    }

    /** Ends one choice early (a stop string was found); its remaining events are ignored by the caller. */
    void cancel(int index) {
        handles.get(index).cancel();
    }

    @Override
    public void close() {
        for (GenerationHandle h : handles) {
            if (!h.isDone()) h.cancel();
        }
    }
}
