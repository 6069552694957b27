package dev.kiln.backend.cuda.internal;

import static java.lang.foreign.ValueLayout.JAVA_INT;

import dev.kiln.api.backend.PendingTokens;
import dev.kiln.backend.cuda.bindings.CudaDriver;
import java.lang.foreign.MemorySegment;

/**
 * Tokens chosen on the device and sent back to the host without the host waiting for them: what lets the engine
 * queue the next step before it has read this one's tokens ({@link PendingTokens}).
 *
 * <p>Two slots serve in turn, each with the tokens' device buffer (the choosing kernels write there, and the next
 * step's embedding reads placeholders from it), a page-locked host buffer the tokens are copied into, and an event
 * after that copy. Two because one step's tokens are in flight while the next step chooses its own. A slot claimed
 * again while its earlier tokens were never awaited first waits for them and keeps them, so no pending tokens are
 * ever lost, only waited for sooner.
 *
 * <p>Sending tokens back also moves the upload ring to its other half ({@link Uploads#startOtherHalf}): the next step
 * stages its arrays while this one still reads its own.
 */
public final class TokenReadbacks implements AutoCloseable {
    private static final int SLOTS = 2;

    private final CudaContext context;
    private final CudaDriver driver;
    private final Slot[] slots = new Slot[SLOTS];
    private int next;

    public TokenReadbacks(CudaContext context) {
        this.context = context;
        this.driver = context.driver();
    }

    /** One slot's buffers and the pending tokens that hold it, if any. */
    private final class Slot {
        final GrowingDeviceBuffer device = new GrowingDeviceBuffer(context);
        final MemorySegment event = driver.createEvent(CudaDriver.EVENT_DISABLE_TIMING);
        MemorySegment host;
        Pending holder;

        void close() {
            Cleanup.all(device::close, () -> driver.destroyEvent(event), () -> {
                if (host != null) driver.freeHost(host);
            });
        }
    }

    /**
     * The device buffer the next choice of {@code rows} tokens is to be written to, for {@link #send} once the
     * kernels that write it are queued. The slot's earlier tokens, if never awaited, are read first.
     */
    public synchronized long claim(int rows) {
        context.bind();
        Slot slot = slots[next];
        if (slot == null) slot = slots[next] = new Slot();
        if (slot.holder != null) slot.holder.read();
        if (slot.host == null || slot.host.byteSize() < 4L * rows) {
            if (slot.host != null) driver.freeHost(slot.host);
            slot.host = null; // not left dangling if the allocation fails
            slot.host = driver.allocateHost(Math.max(4L * rows, 1024));
        }
        return slot.device.atLeast(4L * rows);
    }

    /**
     * Queues the copy of the claimed slot's {@code rows} tokens to the host after everything queued so far (the
     * kernels that choose them among it), and returns them pending; the next slot is claimed next time.
     *
     * @param columns the width of the logits rows the tokens were chosen from: every token is below it
     */
    public synchronized Pending send(int rows, int columns) {
        Slot slot = slots[next];
        context.onStream(stream -> { // after the held launches that choose the tokens
            if (rows > 0) driver.copyToHostAsync(slot.host, slot.device.atLeast(4L * rows), 4L * rows, stream);
            driver.record(slot.event, stream);
        });
        context.uploads().startOtherHalf();
        context.recorder().stepQueuedAhead();
        next = (next + 1) % SLOTS;
        Pending pending = new Pending(slot, rows, columns);
        slot.holder = pending;
        return pending;
    }

    /** Tokens of one step, being chosen and copied back. */
    public final class Pending implements PendingTokens {
        private final Slot slot;
        private final int count;
        private final int columns;
        private int[] values;
        /** Whether the recorder was told the host has come to these tokens ({@link StepRecorder#stepAwaited}). */
        private boolean awaited;

        private Pending(Slot slot, int count, int columns) {
            this.slot = slot;
            this.count = count;
            this.columns = columns;
        }

        @Override
        public int count() {
            return count;
        }

        /** Every token is below this: the width of the logits rows they were chosen from. */
        public int columns() {
            return columns;
        }

        @Override
        public int[] await() {
            synchronized (TokenReadbacks.this) {
                read();
                return values.clone();
            }
        }

        /** Whether the tokens are on the host already (then the device copy may be gone). */
        public boolean isRead() {
            synchronized (TokenReadbacks.this) {
                return values != null;
            }
        }

        /**
         * Where the device holds the tokens, for work queued from now on; only while they are not {@linkplain
         * #isRead read}, since after that the slot may serve later tokens.
         */
        public long devicePointer() {
            synchronized (TokenReadbacks.this) {
                if (slot.holder != this) throw new IllegalStateException("these pending tokens were read, their slot reused");
                return slot.device.atLeast(4L * count);
            }
        }

        /** Whether these are tokens of the given readbacks (of one backend's device). */
        public boolean isFrom(TokenReadbacks readbacks) {
            return readbacks == TokenReadbacks.this;
        }

        private void read() {
            if (values != null) return;
            context.bind();
            if (!awaited) { // the step no longer runs ahead of the host, whether or not its work failed
                awaited = true;
                context.recorder().stepAwaited();
            }
            driver.synchronizeEvent(slot.event); // throws, naming the error, if the work that chose them failed
            values = slot.host.asSlice(0, 4L * count).toArray(JAVA_INT);
            if (slot.holder == this) slot.holder = null;
        }

        @Override
        public String toString() {
            return count + " tokens chosen on the device" + (values == null ? ", pending" : "");
        }
    }

    @Override
    public synchronized void close() {
        Runnable[] releases = new Runnable[slots.length];
        for (int i = 0; i < slots.length; i++) {
            Slot slot = slots[i];
            slots[i] = null; // a second close must not free them again
            releases[i] = slot == null ? () -> {} : slot::close;
        }
        Cleanup.all(releases);
    }
}
