package dev.kiln.tokenizer.hf;

import dev.kiln.tokenizer.bpe.BpeModel;
import java.util.Arrays;

/** A growable list of primitive ints: the ids of one encoding. */
final class IntList implements BpeModel.IntSink {
    private int[] values;
    private int size;

    IntList(int initialCapacity) {
        values = new int[Math.max(8, initialCapacity)];
    }

    @Override
    public void add(int value) {
        if (size == values.length) {
            values = Arrays.copyOf(values, size * 2);
        }
        values[size++] = value;
    }

    void addAll(int[] more) {
        for (int value : more) {
            add(value);
        }
    }

    int[] toArray() {
        return Arrays.copyOf(values, size);
    }
}
