package dev.kiln.server.structured;

import dev.kiln.api.sampling.SamplingParams;
import dev.kiln.api.sampling.SequenceView;
import dev.kiln.api.tokenizer.Tokenizer;
import dev.kiln.tokenizer.hf.TokenizerJsonReader;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import java.util.zip.GZIPInputStream;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.Warmup;

/**
 * What JSON mode adds to each decode step: masking a whole vocabulary's row from a given point of the text, with
 * the mask of that point's state kept from an earlier step (the usual case) and computed anew. The baseline is the
 * step's unavoidable pass, copying the row. "string" is inside a string value, where nearly every
 * token fits and all its bytes are read; "after-value" follows a value, where nearly every token is refused at its
 * first byte; "schema-value" is where a schema wants an integer.
 *
 * <pre>
 * ./mvnw -Pbench -f bundles/server/pom.xml test-compile exec:exec -Djmh.args="JsonConstraintBenchmark"
 * </pre>
 * (the DeepSeek-V3 vocabulary of the fixtures, 129,280 tokens; {@code -p tokenizer=FOLDER} for another).
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(1)
public class JsonConstraintBenchmark {
    @Param({"../../fixtures/tokenizers/deepseek_v3"})
    public String tokenizer;

    @Param({"string", "after-value", "schema-value"})
    public String point;

    private GrammarConstraint constraint;
    private VocabularyBytes vocabulary;
    private SequenceView view;
    private float[] row;
    private float[] logits;

    @Setup(Level.Trial)
    public void load() throws IOException {
        Tokenizer t = TokenizerJsonReader.read(unpacked(Path.of(tokenizer)));
        String text = switch (point) {
            case "string" -> "{\"name\": \"A long description of";
            case "after-value" -> "{\"name\": \"x\", \"n\": 12, \"ok\": true";
            default -> "{\"name\": \"x\", \"age\": "; // a value that must be an integer
        };
        int[] output = t.encode(text, false);
        view = new SequenceView() {
            @Override public int[] promptTokens() { return new int[] {0}; }
            @Override public int[] outputTokens() { return output; }
            @Override public SamplingParams params() { return SamplingParams.GREEDY; }
        };
        constraint = point.startsWith("schema")
                ? GrammarConstraint.jsonSchema(t, -1, GrammarConstraint.compileSchema(com.google.gson.JsonParser.parseString(
                        "{\"type\":\"object\",\"additionalProperties\":false,\"required\":[\"name\",\"age\"],\"properties\":"
                                + "{\"name\":{\"type\":\"string\"},\"age\":{\"type\":\"integer\"}}}").getAsJsonObject()))
                : GrammarConstraint.jsonObject(t, -1);
        vocabulary = VocabularyBytes.of(t);
        row = new float[t.vocabSize()];
        for (int i = 0; i < row.length; i++) row[i] = (float) Math.sin(i);
        logits = new float[row.length];
    }

    @Benchmark
    public float copyRow() {
        System.arraycopy(row, 0, logits, 0, row.length);
        return logits[0];
    }

    /** A state whose mask the vocabulary keeps: the usual step. */
    @Benchmark
    public float copyAndMask() {
        System.arraycopy(row, 0, logits, 0, row.length);
        constraint.process(logits, view);
        return logits[0];
    }

    /** The first step in a state: the mask computed. */
    @Benchmark
    public float copyAndMaskNewState() {
        vocabulary.forgetMasks();
        System.arraycopy(row, 0, logits, 0, row.length);
        constraint.process(logits, view);
        return logits[0];
    }

    /** The fixtures keep tokenizer.json compressed: a copy of the folder with it unpacked. */
    private static Path unpacked(Path folder) throws IOException {
        Path packed = folder.resolve("tokenizer.json.gz");
        if (!Files.isRegularFile(packed)) return folder;
        Path copy = Files.createTempDirectory("kiln-bench-tokenizer");
        try (var files = Files.list(folder)) {
            for (Path f : files.toList()) if (!f.equals(packed)) Files.copy(f, copy.resolve(f.getFileName()));
        }
        try (InputStream in = new GZIPInputStream(Files.newInputStream(packed))) {
            Files.copy(in, copy.resolve("tokenizer.json"));
        }
        return copy;
    }
}
