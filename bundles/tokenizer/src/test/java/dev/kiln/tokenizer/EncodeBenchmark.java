package dev.kiln.tokenizer;

import dev.kiln.tokenizer.hf.HfTokenizer;
import dev.kiln.tokenizer.hf.TokenizerJsonReader;
import java.nio.file.Path;
import java.util.Random;

/**
 * Measures loading a {@code tokenizer.json} and encoding a 100 KB mixed text (English prose, code, Chinese, numbers,
 * emoji): the first encoding (word cache empty) and the steady state. Not part of the build; run it after
 * {@code ./mvnw -q -o test-compile -pl bundles/tokenizer} with
 * <pre>
 * ./mvnw -q -o dependency:build-classpath -pl bundles/tokenizer -Dmdep.outputFile=target/cp.txt
 * java -cp bundles/tokenizer/target/test-classes:bundles/tokenizer/target/classes:$(cat bundles/tokenizer/target/cp.txt) \
 *     dev.kiln.tokenizer.EncodeBenchmark bundles/tokenizer/target/fixtures/tokenizers/qwen3 bundles/tokenizer/target/fixtures/tokenizers/deepseek_v3
 * </pre>
 */
public final class EncodeBenchmark {
    private static final String[] WORDS = {
        "the", "model", "serves", "requests", "while", "tokens", "stream", "back", "to", "clients", "of", "a",
        "cluster", "and", "its", "cache", "keeps", "blocks", "attention", "kernel", "reads", "weights", "from",
        "memory", "bandwidth", "limits", "decoding", "speed", "however", "prefill", "is", "compute", "bound",
        "DeepSeek", "Qwen", "Kiln", "OSGi", "bundle", "service", "registry", "swappable", "quantized", "int8"};
    private static final String[] CHINESE = {
        "请用中文介绍一下人工智能的发展历史", "写两首关于秋天的五言绝句", "推理加速技巧", "模型的权重被量化为八位整数",
        "注意力机制读取键值缓存", "我们在两颗核心上测量了速度"};
    private static final String CODE = "def attention(q, k, v, mask=None):\n    scores = q @ k.T / math.sqrt(d)\n"
            + "    if mask is not None:\n        scores = scores.masked_fill(mask == 0, -1e9)\n"
            + "    return softmax(scores, dim=-1) @ v  # [batch, heads, seq, dim]\n\n";

    private EncodeBenchmark() {}

    /** About {@code chars} characters of mixed text, the same for a given seed. */
    static String mixedText(int chars, long seed) {
        Random random = new Random(seed);
        StringBuilder text = new StringBuilder(chars + 256);
        while (text.length() < chars) {
            switch (random.nextInt(10)) {
                case 0 -> text.append(CODE);
                case 1, 2 -> text.append(CHINESE[random.nextInt(CHINESE.length)]).append("。");
                case 3 -> text.append(' ').append(random.nextInt(1_000_000)).append('.').append(random.nextInt(100))
                        .append(" \uD83D\uDE00 ");
                default -> {
                    for (int i = 0; i < 12; i++) {
                        text.append(WORDS[random.nextInt(WORDS.length)]).append(i == 11 ? ".\n" : " ");
                    }
                }
            }
        }
        return text.toString();
    }

    public static void main(String[] args) throws Exception {
        String text = mixedText(100_000, 42);
        int bytes = text.getBytes(java.nio.charset.StandardCharsets.UTF_8).length;
        for (String folder : args) {
            long loadStart = System.nanoTime();
            HfTokenizer tokenizer = TokenizerJsonReader.read(Path.of(folder));
            long loadNanos = System.nanoTime() - loadStart;
            long coldStart = System.nanoTime();
            int tokens = tokenizer.encode(text, false).length;
            long coldNanos = System.nanoTime() - coldStart;
            // Steady state: let the JIT finish, then take the best of several runs.
            long best = Long.MAX_VALUE;
            for (int round = 0; round < 30; round++) {
                long start = System.nanoTime();
                tokenizer.encode(text, false);
                best = Math.min(best, System.nanoTime() - start);
            }
            System.out.printf("%s: load %.0f ms; %d chars (%d bytes) -> %d tokens; first encode %.1f ms, "
                            + "steady %.1f ms (%.1f MB/s, %.0f k tokens/s)%n",
                    Path.of(folder).getFileName(), loadNanos / 1e6, text.length(), bytes, tokens, coldNanos / 1e6,
                    best / 1e6, bytes / (best / 1e9) / 1e6, tokens / (best / 1e9) / 1e3);
        }
    }
}
