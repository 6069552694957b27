package dev.kiln.api.backend;

import dev.kiln.api.tensor.Tensor;

/**
 * Rotary position embedding prepared by a backend for one set of frequencies.
 */
public interface RotaryEmbedding {
    /** Which two elements of a head's rotary part form one rotated pair. */
    enum Layout {
        /** Element i pairs with i + rotaryDim/2 (GPT-NeoX, Llama, Qwen2 as stored on the hub). */
        HALVES,
        /** Element 2i pairs with 2i + 1 (the original DeepSeek MLA rope weights). */
        INTERLEAVED
    }

    /**
     * Rotates, in place, the rotary part of every head of every row of x.
     *
     * @param x          {@code [T, heads * headStride]}
     * @param positions  position of each row of x
     * @param heads      heads per row
     * @param headStride elements per head
     * @param offset     first rotary element within each head (MLA keeps the rope part after the "nope" part)
     */
    void apply(Tensor x, int[] positions, int heads, int headStride, int offset);

    /** Elements rotated per head ({@code 2 × frequencies}). */
    int rotaryDim();
}
