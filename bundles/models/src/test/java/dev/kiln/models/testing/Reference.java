package dev.kiln.models.testing;

import dev.kiln.loader.safetensors.SafetensorsFile;
import dev.kiln.loader.safetensors.TensorValues;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Path;

/**
 * A fixture's {@code reference.safetensors}: per prompt {@code i}, the prompt, the reference logits and final
 * hidden states at every position, and the greedy continuation with its logits and margins.
 */
public final class Reference {
    private final Path file;

    private Reference(Path file) {
        this.file = file;
    }

    /** The reference of the fixture folder. */
    public static Reference of(Path fixture) {
        return new Reference(fixture.resolve("reference.safetensors"));
    }

    /** The prompt {@code input_ids_i}. */
    public int[] prompt(int i) {
        return ints("input_ids_" + i);
    }

    /** The prompt followed by its greedy continuation, {@code greedy_ids_i}. */
    public int[] greedyIds(int i) {
        return ints("greedy_ids_" + i);
    }

    /** {@code logits_i}, {@code [prompt, vocab]} row-major. */
    public float[] logits(int i) {
        return floats("logits_" + i);
    }

    /** {@code greedy_logits_i}, {@code [greedy sequence, vocab]} row-major. */
    public float[] greedyLogits(int i) {
        return floats("greedy_logits_" + i);
    }

    /** {@code greedy_margin_i}: the top-1 minus top-2 logit at each generated step. */
    public float[] greedyMargins(int i) {
        return floats("greedy_margin_" + i);
    }

    /** {@code last_hidden_i}, {@code [prompt, hidden]}, or null when the fixture has none. */
    public float[] lastHidden(int i) {
        return has("last_hidden_" + i) ? floats("last_hidden_" + i) : null;
    }

    /**
     * {@code mtp_logits_i}, {@code [prompt - 1, vocab]}: row j predicts token j+2 from the target's state at j and
     * token j+1; null when the fixture has no MTP module.
     */
    public float[] mtpLogits(int i) {
        return has("mtp_logits_" + i) ? floats("mtp_logits_" + i) : null;
    }

    private boolean has(String name) {
        try (SafetensorsFile f = SafetensorsFile.open(file)) {
            return f.find(name).isPresent();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private int[] ints(String name) {
        try (SafetensorsFile f = SafetensorsFile.open(file)) {
            return TensorValues.toInts(f.tensor(name));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private float[] floats(String name) {
        try (SafetensorsFile f = SafetensorsFile.open(file)) {
            return TensorValues.toFloats(f.tensor(name));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
