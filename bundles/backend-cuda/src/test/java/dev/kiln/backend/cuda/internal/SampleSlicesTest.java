package dev.kiln.backend.cuda.internal;

import static org.junit.jupiter.api.Assertions.assertEquals;

import org.junit.jupiter.api.Test;

/** How many slices each row of a sampling step is cut into (no GPU needed). */
class SampleSlicesTest {
    private static final int VOCABULARY = 151936, SMS = 132;

    @Test
    void fewRowsAreCutIntoManySlicesAndManyRowsIntoFew() {
        assertEquals(Kernels.SAMPLE_MAX_SLICES, Kernels.sampleSlices(1, VOCABULARY, SMS));
        assertEquals(33, Kernels.sampleSlices(32, VOCABULARY, SMS)); // 8 blocks a multiprocessor, rounded up
        assertEquals(9, Kernels.sampleSlices(128, VOCABULARY, SMS));
        assertEquals(1, Kernels.sampleSlices(4096, VOCABULARY, SMS));
    }

    @Test
    void noSliceIsShorterThanTheSmallestWorthABlock() {
        assertEquals(1, Kernels.sampleSlices(1, 1000, SMS));
        assertEquals(4, Kernels.sampleSlices(1, 4 * Kernels.SAMPLE_MIN_SLICE + 5, SMS));
        assertEquals(1, Kernels.sampleSlices(1, 0, SMS));
    }
}
