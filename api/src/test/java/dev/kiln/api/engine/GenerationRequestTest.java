package dev.kiln.api.engine;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import dev.kiln.api.sampling.SamplingParams;
import org.junit.jupiter.api.Test;

class GenerationRequestTest {
    @Test
    void defaultsFillWhatTheCallerLeftOut() {
        var r = new GenerationRequest("a", new int[] {1}, null, 4, 0, null, false, -1, null);
        assertEquals(SamplingParams.GREEDY, r.sampling());
        assertEquals(0, r.stopTokenIds().length);
        assertEquals(0, r.reference().length);
    }

    @Test
    void invalidRequestsAreRefused() {
        assertThrows(IllegalArgumentException.class, () -> GenerationRequest.greedy("a", new int[0], 1));
        assertThrows(IllegalArgumentException.class, () -> GenerationRequest.greedy("", new int[] {1}, 1));
        assertThrows(IllegalArgumentException.class, () -> GenerationRequest.greedy("a", new int[] {1}, -1));
        assertThrows(IllegalArgumentException.class,
                () -> new GenerationRequest("a", new int[] {1}, null, 2, 3, null, false, -1, null));
    }

    @Test
    void samplingParametersAreValidated() {
        assertThrows(IllegalArgumentException.class, () -> new SamplingParams(-1, 1, 0, 0, 0, 0, 1, null, 0));
        assertThrows(IllegalArgumentException.class, () -> new SamplingParams(1, 0, 0, 0, 0, 0, 1, null, 0));
        assertThrows(IllegalArgumentException.class, () -> new SamplingParams(1, 1, 0, 2, 0, 0, 1, null, 0));
        assertThrows(IllegalArgumentException.class, () -> new SamplingParams(1, 1, 0, 0, 0, 0, 0, null, 0));
    }
}
