package dev.kiln.backend.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kiln.api.backend.ExpertRouting;
import dev.kiln.api.backend.ExpertRouting.Scoring;
import dev.kiln.api.backend.ExpertRouting.Selection;
import dev.kiln.api.backend.RoutedExperts;
import dev.kiln.api.backend.Weight;
import dev.kiln.api.tensor.DType;
import dev.kiln.api.tensor.Tensor;
import dev.kiln.backend.cuda.internal.Fp8Weight;
import dev.kiln.backend.cuda.internal.QuantizedWeight;
import dev.kiln.backend.cuda.quant.E4m3;
import dev.kiln.backend.cuda.testing.Data;
import dev.kiln.backend.cuda.testing.Gpu;
import java.lang.foreign.Arena;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The routed experts on the device against the host: the routing rule of {@link ExpertRouting#route} applied to the
 * same logits, and each chosen expert's MLP computed in double precision from the same weights: bf16, FP8 codes in
 * blocks of 128 x 128 (edge blocks partial, subnormal codes included), INT8 codes with row scales, INT4 codes in groups
 * of 64 or 128 columns (the last group of a row partial). Covers the three selection rules, one token,
 * several, more tokens per expert than a pass holds (8), and padding rows, which the device computes like routed
 * ones. Runs only where a CUDA device is.
 */
class CudaRoutedExpertsTest {
    private static final int HIDDEN = 320;
    private static final int WIDTH = 136;
    /** FP8 and INT8 experts' width: a multiple of 16, and more than one 128-row (down: 128-column) block. */
    private static final int FP8_WIDTH = 144;
    /** INT4 experts' width: a multiple of 32 whose last group of 64 or 128 columns is partial. */
    private static final int INT4_WIDTH = 160;

    private final Random random = new Random(7);
    private final List<AutoCloseable> made = new ArrayList<>();

    @AfterEach
    void release() throws Exception {
        for (int i = made.size() - 1; i >= 0; i--) made.get(i).close();
        made.clear();
    }

    private <T extends AutoCloseable> T keep(T resource) {
        made.add(resource);
        return resource;
    }

    @ParameterizedTest(name = "{0}/{1}: {4} of {2} {7} experts in {3} groups, {5} tokens, {6} routed")
    @CsvSource({
            "SOFTMAX, GREEDY, 16, 1, 4, 1, 1, bf16",
            "SOFTMAX, GREEDY, 16, 1, 4, 5, 5, bf16",
            "SOFTMAX, GROUP_LIMITED_GREEDY, 16, 4, 3, 7, 7, bf16",
            "SIGMOID, NOAUX_TC, 16, 4, 4, 1, 1, bf16",
            "SIGMOID, NOAUX_TC, 16, 4, 4, 40, 40, bf16",
            "SIGMOID, NOAUX_TC, 32, 8, 6, 24, 21, bf16",
            "SIGMOID, NOAUX_TC, 16, 4, 4, 1, 1, fp8",
            "SOFTMAX, GREEDY, 16, 1, 4, 5, 5, fp8",
            "SIGMOID, NOAUX_TC, 32, 8, 6, 40, 37, fp8",
            "SIGMOID, NOAUX_TC, 16, 4, 4, 1, 1, int8",
            "SOFTMAX, GREEDY, 16, 1, 4, 40, 37, int8",
            "SIGMOID, NOAUX_TC, 16, 4, 4, 1, 1, int4g64",
            "SOFTMAX, GREEDY, 16, 1, 4, 40, 37, int4g64",
            "SIGMOID, NOAUX_TC, 16, 4, 4, 5, 5, int4g128",
            "SIGMOID, NOAUX_TC, 32, 8, 6, 24, 21, int4g128"})
    void theDeviceRoutesAndMultipliesAsTheHostRule(Scoring scoring, Selection selection, int experts, int groups,
                                                   int perToken, int tokens, int routedTokens, String format) {
        CudaBackend gpu = Gpu.backend();
        boolean quantized = !format.equals("bf16");
        int width = format.startsWith("int4") ? INT4_WIDTH : quantized ? FP8_WIDTH : WIDTH;
        int groupsPerToken = groups == 1 ? 1 : groups / 2;
        boolean noaux = selection == Selection.NOAUX_TC;
        float[] bias = noaux ? scaled(Data.uniform(random, experts), 0.3f) : null;
        var routing = new ExpertRouting(experts, perToken, scoring, selection, groups, groupsPerToken, noaux,
                noaux ? 2.5 : 1.0, bias);
        float[][] gate = new float[experts][], up = new float[experts][], down = new float[experts][];
        Weight[] gw = new Weight[experts], uw = new Weight[experts], dw = new Weight[experts];
        for (int e = 0; e < experts; e++) {
            if (quantized) {
                gate[e] = new float[width * HIDDEN];
                up[e] = new float[width * HIDDEN];
                down[e] = new float[HIDDEN * width];
                gw[e] = keep(quantizedWeight(gpu, format, gate[e], width, HIDDEN));
                uw[e] = keep(quantizedWeight(gpu, format, up[e], width, HIDDEN));
                dw[e] = keep(quantizedWeight(gpu, format, down[e], HIDDEN, width));
                continue;
            }
            gate[e] = bf16Weights(width * HIDDEN);
            up[e] = bf16Weights(width * HIDDEN);
            down[e] = bf16Weights(HIDDEN * width);
            gw[e] = keep(gpu.denseWeight(Data.tensor("gate" + e, DType.BF16, gate[e], width, HIDDEN)));
            uw[e] = keep(gpu.denseWeight(Data.tensor("up" + e, DType.BF16, up[e], width, HIDDEN)));
            dw[e] = keep(gpu.denseWeight(Data.tensor("down" + e, DType.BF16, down[e], HIDDEN, width)));
        }
        RoutedExperts device = gpu.routedExperts(routing, gw, uw, dw, 64);
        assertNotNull(device, format + " experts must run on the device");
        keep(device);
        assertEquals(64, device.capacity());

        float[] x = Data.uniform(random, tokens * HIDDEN);
        float[] logits = scaled(Data.uniform(random, tokens * experts), 3f);
        float[] residual = Data.uniform(random, tokens * HIDDEN);
        Tensor xt = keep(gpu.allocate(DType.F32, tokens, HIDDEN));
        Tensor lt = keep(gpu.allocate(DType.F32, tokens, experts));
        Tensor rt = keep(gpu.allocate(DType.F32, tokens, HIDDEN));
        gpu.write(x, xt);
        gpu.write(logits, lt);
        gpu.write(residual, rt);
        device.addTo(xt, lt, routedTokens, rt);
        float[] actual = gpu.read(rt);

        double[] expected = new double[tokens * HIDDEN];
        for (int i = 0; i < expected.length; i++) expected[i] = residual[i];
        // The device routes padding rows too (its launches then depend on the padded count only): all rows as routed.
        ExpertRouting.Assignment assignment = routing.route(logits, tokens);
        double[] h = new double[width];
        for (int e = 0; e < experts; e++) {
            for (int k = 0; k < assignment.tokens()[e].length; k++) {
                int t = assignment.tokens()[e][k];
                for (int r = 0; r < width; r++) {
                    double g = dot(gate[e], r, x, t, HIDDEN), u = dot(up[e], r, x, t, HIDDEN);
                    h[r] = g / (1 + Math.exp(-g)) * u;
                }
                for (int r = 0; r < HIDDEN; r++) {
                    double y = 0;
                    for (int c = 0; c < width; c++) y += down[e][r * width + c] * h[c];
                    expected[t * HIDDEN + r] += assignment.weights()[e][k] * y;
                }
            }
        }
        double scale = 0, error = 0;
        for (int i = 0; i < expected.length; i++) {
            scale = Math.max(scale, Math.abs(expected[i] - residual[i]));
            double d = Math.abs(actual[i] - expected[i]);
            error = Double.isNaN(d) ? Double.NaN : Math.max(error, d);
        }
        System.out.printf("routed %s experts %s/%s, %d of %d, %d tokens (%d routed): max error %.2e at a scale of %.3f%n",
                format, scoring, selection, perToken, experts, tokens, routedTokens, error, scale);
        assertTrue(scale > 0.1, "the experts added nothing: the test would prove nothing");
        assertTrue(error <= 1e-4 * scale, "max error " + error + " against a scale of " + scale);
    }

    /**
     * NaN logits (a diverged model) give NaN rows, not a fault: each token still picks distinct experts in range, and the
     * device keeps working (the next call on the same experts is checked by the host rule).
     */
    @Test
    void nanLogitsNeitherFaultTheDeviceNorPoisonLaterCalls() {
        CudaBackend gpu = Gpu.backend();
        int experts = 8;
        var routing = new ExpertRouting(experts, 3, Scoring.SOFTMAX, Selection.GREEDY, 1, 1, false, 1.0, null);
        Weight[] w = new Weight[experts];
        for (int e = 0; e < experts; e++) {
            w[e] = keep(gpu.denseWeight(Data.tensor("w" + e, DType.BF16, bf16Weights(16 * 16), 16, 16)));
        }
        RoutedExperts device = keep(gpu.routedExperts(routing, w, w, w, 4));
        Tensor x = keep(gpu.allocate(DType.F32, 2, 16));
        Tensor logits = keep(gpu.allocate(DType.F32, 2, experts));
        Tensor residual = keep(gpu.allocate(DType.F32, 2, 16));
        gpu.write(Data.uniform(random, 32), x);
        float[] bad = Data.uniform(random, 2 * experts);
        java.util.Arrays.fill(bad, 0, experts, Float.NaN);
        bad[experts + 2] = Float.POSITIVE_INFINITY;
        gpu.write(bad, logits);
        gpu.write(new float[32], residual);
        device.addTo(x, logits, 2, residual);
        float[] out = gpu.read(residual);
        for (float v : out) assertTrue(Float.isNaN(v), "a NaN router row must give NaN, got " + v);

        float[] xs = Data.uniform(random, 32), good = Data.uniform(random, 2 * experts), before = Data.uniform(random, 32);
        gpu.write(xs, x);
        gpu.write(good, logits);
        gpu.write(before, residual);
        device.addTo(x, logits, 2, residual);
        float[] after = gpu.read(residual);
        double changed = 0;
        for (int i = 0; i < 32; i++) changed = Math.max(changed, Math.abs(after[i] - before[i]));
        assertTrue(changed > 0 && !Double.isNaN(changed), "the next call must compute again: " + changed);
    }

    @Test
    void otherFormatsOrOddWidthExpertsStayOnTheHostAndTooManyTokensAreRefused() {
        CudaBackend gpu = Gpu.backend();
        var routing = new ExpertRouting(2, 1, Scoring.SOFTMAX, Selection.GREEDY, 1, 1, false, 1.0, null);
        Weight[] f32 = {
                keep(gpu.denseWeight(Data.tensor("a", DType.F32, Data.uniform(random, 16 * 8), 16, 8))),
                keep(gpu.denseWeight(Data.tensor("b", DType.F32, Data.uniform(random, 16 * 8), 16, 8)))};
        assertNull(gpu.routedExperts(routing, f32, f32, f32, 4), "f32 experts have no device path");
        Weight[] odd = {
                keep(gpu.denseWeight(Data.tensor("c", DType.BF16, Data.uniform(random, 12 * 12), 12, 12))),
                keep(gpu.denseWeight(Data.tensor("d", DType.BF16, Data.uniform(random, 12 * 12), 12, 12)))};
        assertNull(gpu.routedExperts(routing, odd, odd, odd, 4), "widths not a multiple of 8 have no device path");
        Weight[] smallBlocks = new Weight[2];
        for (int i = 0; i < 2; i++) {
            var builder = new Fp8Weight.Builder(gpu.context(), 16, 16, 8, 8);
            try (Arena arena = Arena.ofConfined()) {
                builder.writeCodes(0, 16, arena.allocate(16 * 16));
            }
            builder.writeScales(new float[4]);
            smallBlocks[i] = keep(builder.build());
        }
        assertNull(gpu.routedExperts(routing, smallBlocks, smallBlocks, smallBlocks, 4),
                "FP8 blocks other than 128 x 128 have no device path");
        Weight[] narrowInt4 = new Weight[2];
        for (int i = 0; i < 2; i++) {
            var builder = new QuantizedWeight.Builder(gpu.context(), QuantizedWeight.Format.INT4, 16, 16, 64);
            try (Arena arena = Arena.ofConfined()) {
                builder.write(0, 16, arena.allocate(16L * builder.rowBytes()), arena.allocate(4L * 16 * builder.scalesPerRow()));
            }
            narrowInt4[i] = keep(builder.build());
        }
        assertNull(gpu.routedExperts(routing, narrowInt4, narrowInt4, narrowInt4, 4),
                "INT4 rows that are not whole 32-column chunks have no device path");

        Weight[] square = {
                keep(gpu.denseWeight(Data.tensor("e", DType.BF16, Data.uniform(random, 16 * 16), 16, 16))),
                keep(gpu.denseWeight(Data.tensor("f", DType.BF16, Data.uniform(random, 16 * 16), 16, 16)))};
        RoutedExperts device = keep(gpu.routedExperts(routing, square, square, square, 4));
        Tensor x = keep(gpu.allocate(DType.F32, 5, 16));
        Tensor logits = keep(gpu.allocate(DType.F32, 5, 2));
        Tensor residual = keep(gpu.allocate(DType.F32, 5, 16));
        assertThrows(IllegalArgumentException.class, () -> device.addTo(x, logits, 5, residual));
        assertThrows(IllegalArgumentException.class, () -> device.addTo(x, logits, 2, x));
    }

    /** A weight of a quantized format ("fp8", "int8", "int4g64", "int4g128"); {@code values} receives its weights. */
    private Weight quantizedWeight(CudaBackend gpu, String format, float[] values, int rows, int columns) {
        if (format.equals("fp8")) return fp8Weight(gpu, values, rows, columns);
        boolean int4 = format.startsWith("int4");
        int group = format.equals("int4g64") ? 64 : 128;
        QuantizedWeight.Format storage = int4 ? QuantizedWeight.Format.INT4 : QuantizedWeight.Format.INT8;
        var builder = new QuantizedWeight.Builder(gpu.context(), storage, rows, columns, group);
        int perRow = builder.scalesPerRow();
        float[] scales = new float[rows * perRow];
        byte[] codes = new byte[rows * builder.rowBytes()];
        for (int r = 0; r < rows; r++) {
            for (int g = 0; g < perRow; g++) scales[r * perRow + g] = (int4 ? 0.015f : 0.1f / 127) * (0.5f + random.nextFloat());
            for (int c = 0; c < columns; c++) {
                int q = int4 ? random.nextInt(16) - 8 : random.nextInt(255) - 127;
                values[r * columns + c] = q * scales[r * perRow + (int4 ? c / group : 0)];
                if (!int4) {
                    codes[r * builder.rowBytes() + c] = (byte) q;
                } else {
                    int at = r * builder.rowBytes() + c / 2;
                    codes[at] |= (byte) ((q + 8) << (c % 2 == 0 ? 0 : 4));
                }
            }
        }
        try (Arena arena = Arena.ofConfined()) {
            builder.write(0, rows, arena.allocateFrom(ValueLayout.JAVA_BYTE, codes),
                    arena.allocateFrom(ValueLayout.JAVA_FLOAT, scales));
        }
        return builder.build();
    }

    /**
     * An FP8 weight in blocks of 128 x 128 on the device: random e4m3 codes of both signs with exponents 0 to 8
     * (subnormals included, no NaN), random block scales; {@code values} receives the weights they stand for.
     */
    private Fp8Weight fp8Weight(CudaBackend gpu, float[] values, int rows, int columns) {
        var builder = new Fp8Weight.Builder(gpu.context(), rows, columns, 128, 128);
        int rowBlocks = Math.ceilDiv(rows, 128), columnBlocks = Math.ceilDiv(columns, 128);
        float[] scales = new float[rowBlocks * columnBlocks];
        for (int i = 0; i < scales.length; i++) scales[i] = 0.05f + 0.05f * random.nextFloat();
        byte[] codes = new byte[rows * columns];
        for (int r = 0; r < rows; r++) {
            for (int c = 0; c < columns; c++) {
                byte code = (byte) ((random.nextBoolean() ? 0x80 : 0) | random.nextInt(9) << 3 | random.nextInt(8));
                codes[r * columns + c] = code;
                values[r * columns + c] = E4m3.toFloat(code) * scales[(r / 128) * columnBlocks + c / 128];
            }
        }
        try (Arena arena = Arena.ofConfined()) {
            builder.writeCodes(0, rows, arena.allocateFrom(ValueLayout.JAVA_BYTE, codes));
        }
        builder.writeScales(scales);
        return builder.build();
    }

    /** Uniform values in [-0.1, 0.1) that bf16 holds exactly, so that host and device multiply the same weights. */
    private float[] bf16Weights(int n) {
        float[] v = scaled(Data.uniform(random, n), 0.1f);
        for (int i = 0; i < n; i++) v[i] = Float.intBitsToFloat(Float.floatToRawIntBits(v[i]) & 0xffff0000);
        return v;
    }

    private static double dot(float[] w, int row, float[] x, int token, int n) {
        double s = 0;
        for (int c = 0; c < n; c++) s += (double) w[row * n + c] * x[token * n + c];
        return s;
    }

    private static float[] scaled(float[] v, float factor) {
        for (int i = 0; i < v.length; i++) v[i] *= factor;
        return v;
    }
}
