package dev.kiln.tokenizer.hf;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import com.google.gson.stream.JsonReader;
import com.google.gson.stream.JsonToken;
import dev.kiln.tokenizer.bpe.BpeModel;
import dev.kiln.tokenizer.text.AddedToken;
import dev.kiln.tokenizer.text.AddedVocabulary;
import dev.kiln.tokenizer.text.ByteLevelPreTokenizer;
import dev.kiln.tokenizer.text.Normalizer;
import dev.kiln.tokenizer.text.OnigurumaPatterns;
import dev.kiln.tokenizer.text.PreTokenizer;
import dev.kiln.tokenizer.text.RegexSplitter;
import dev.kiln.tokenizer.text.SplitBehavior;
import java.io.BufferedReader;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Pattern;

/**
 * Reads a Hugging Face {@code tokenizer.json} with a BPE model into a {@link HfTokenizer}. The vocabulary and merges
 * (most of the file) are streamed; the small sections are read as trees. Anything the file asks for that Kiln does
 * not implement is refused with the section and type named, never silently approximated.
 */
public final class TokenizerJsonReader {
    /** File name of the tokenizer in a model folder. */
    public static final String FILE = "tokenizer.json";
    /** Words the BPE model remembers, as in the reference implementation. */
    private static final int WORD_CACHE_CAPACITY = 10_000;

    private TokenizerJsonReader() {}

    /**
     * Whether the file describes a BPE model. Skims the stream without building the vocabulary, so it is cheap
     * enough for {@code canLoad}.
     */
    public static boolean isBpe(Path tokenizerJson) {
        try (JsonReader json = new JsonReader(Files.newBufferedReader(tokenizerJson, StandardCharsets.UTF_8))) {
            json.beginObject();
            while (json.hasNext()) {
                if (!json.nextName().equals("model")) {
                    json.skipValue();
                    continue;
                }
                if (json.peek() != JsonToken.BEGIN_OBJECT) {
                    return false;
                }
                json.beginObject();
                boolean hasMerges = false;
                while (json.hasNext()) {
                    String name = json.nextName();
                    if (name.equals("type")) {
                        return json.peek() == JsonToken.STRING && json.nextString().equals("BPE");
                    }
                    hasMerges |= name.equals("merges");
                    json.skipValue();
                }
                // Older files leave out the type of a BPE model; its merges identify it.
                return hasMerges;
            }
            return false;
        } catch (IOException | RuntimeException e) {
            return false;
        }
    }

    /**
     * Reads the {@code tokenizer.json} of a model folder. Special tokens are added as its post-processor says, as the
     * {@code tokenizers} library does; {@code add_bos_token} in {@code tokenizer_config.json} is not consulted
     * (transformers 5 does not apply it either: DeepSeek-V3 encodes without BOS, its chat template writes BOS).
     */
    public static HfTokenizer read(Path modelFolder) throws IOException {
        return readFile(modelFolder.resolve(FILE));
    }

    /** Reads a {@code tokenizer.json} file. */
    public static HfTokenizer readFile(Path tokenizerJson) throws IOException {
        Sections sections = new Sections();
        try (BufferedReader reader = Files.newBufferedReader(tokenizerJson, StandardCharsets.UTF_8);
             JsonReader json = new JsonReader(reader)) {
            json.beginObject();
            while (json.hasNext()) {
                String name = json.nextName();
                switch (name) {
                    case "model" -> sections.model = readModel(json);
                    case "added_tokens", "normalizer", "pre_tokenizer", "post_processor", "decoder" ->
                            sections.trees.put(name, JsonParser.parseReader(json));
                    default -> json.skipValue();
                }
            }
            json.endObject();
        } catch (JsonParseException | IllegalStateException | NumberFormatException e) {
            throw new IOException(tokenizerJson + ": malformed: " + e.getMessage(), e);
        }
        if (sections.model == null) {
            throw new IOException(tokenizerJson + ": no model section");
        }
        try {
            return build(sections);
        } catch (IllegalArgumentException e) {
            throw new IOException(tokenizerJson + ": " + e.getMessage(), e);
        }
    }

    private static final class Sections {
        ModelSection model;
        final Map<String, JsonElement> trees = new HashMap<>();

        JsonElement tree(String name) {
            JsonElement element = trees.get(name);
            return element == null || element.isJsonNull() ? null : element;
        }
    }

    private record ModelSection(String type, Map<String, Integer> vocab, List<String[]> merges, String unknownToken,
                                boolean fuseUnknown, boolean byteFallback, boolean ignoreMerges,
                                String continuingSubwordPrefix, String endOfWordSuffix, Double dropout) {}

    private static ModelSection readModel(JsonReader json) throws IOException {
        String type = null;
        Map<String, Integer> vocab = null;
        List<String[]> merges = List.of();
        String unknown = null;
        String prefix = null;
        String suffix = null;
        boolean fuseUnknown = false;
        boolean byteFallback = false;
        boolean ignoreMerges = false;
        Double dropout = null;
        json.beginObject();
        while (json.hasNext()) {
            String name = json.nextName();
            if (json.peek() == JsonToken.NULL) {
                json.nextNull();
                continue;
            }
            switch (name) {
                case "type" -> type = json.nextString();
                case "vocab" -> vocab = readVocab(json);
                case "merges" -> merges = readMerges(json);
                case "unk_token" -> unknown = json.nextString();
                case "continuing_subword_prefix" -> prefix = json.nextString();
                case "end_of_word_suffix" -> suffix = json.nextString();
                case "fuse_unk" -> fuseUnknown = json.nextBoolean();
                case "byte_fallback" -> byteFallback = json.nextBoolean();
                case "ignore_merges" -> ignoreMerges = json.nextBoolean();
                case "dropout" -> dropout = json.nextDouble();
                default -> json.skipValue();
            }
        }
        json.endObject();
        if (vocab == null) {
            throw new IOException("model section has no vocab");
        }
        return new ModelSection(type == null ? "BPE" : type, vocab, merges, unknown, fuseUnknown, byteFallback,
                ignoreMerges, prefix, suffix, dropout);
    }

    private static Map<String, Integer> readVocab(JsonReader json) throws IOException {
        Map<String, Integer> vocab = new HashMap<>(1 << 18);
        json.beginObject();
        while (json.hasNext()) {
            String token = json.nextName();
            vocab.put(token, json.nextInt());
        }
        json.endObject();
        return vocab;
    }

    /** Merges as {@code "a b"} strings (older files) or {@code ["a", "b"]} pairs (newer ones). */
    private static List<String[]> readMerges(JsonReader json) throws IOException {
        List<String[]> merges = new ArrayList<>(1 << 17);
        json.beginArray();
        while (json.hasNext()) {
            if (json.peek() == JsonToken.STRING) {
                String line = json.nextString();
                int space = line.indexOf(' ');
                if (space < 0 || line.indexOf(' ', space + 1) >= 0) {
                    throw new IOException("merge \"" + line + "\" is not two tokens separated by one space");
                }
                merges.add(new String[] {line.substring(0, space), line.substring(space + 1)});
            } else {
                json.beginArray();
                String left = json.nextString();
                String right = json.nextString();
                if (json.hasNext()) {
                    throw new IOException("merge [" + left + ", " + right + ", ...] has more than two tokens");
                }
                json.endArray();
                merges.add(new String[] {left, right});
            }
        }
        json.endArray();
        return merges;
    }

    private static HfTokenizer build(Sections sections) throws IOException {
        ModelSection m = sections.model;
        if (!m.type.equals("BPE")) {
            throw new IOException("model type " + m.type + " is not supported (only BPE)");
        }
        if (m.dropout != null && m.dropout != 0.0) {
            throw new IOException("BPE dropout is not supported (encoding must be deterministic)");
        }
        if ((m.continuingSubwordPrefix != null && !m.continuingSubwordPrefix.isEmpty())
                || (m.endOfWordSuffix != null && !m.endOfWordSuffix.isEmpty())) {
            throw new IOException("continuing_subword_prefix / end_of_word_suffix are not supported");
        }
        BpeModel model = new BpeModel(m.vocab, m.merges, m.unknownToken, m.fuseUnknown, m.byteFallback,
                m.ignoreMerges, WORD_CACHE_CAPACITY);

        List<AddedToken> added = readAddedTokens(sections.tree("added_tokens"));
        Normalizer normalizer = normalizer(sections.tree("normalizer"));
        PreTokenizer preTokenizer = preTokenizer(sections.tree("pre_tokenizer"));
        requireByteLevelDecoder(sections.tree("decoder"));

        Map<String, Integer> ids = new HashMap<>();
        added.forEach(t -> ids.put(t.content(), t.id()));
        PostProcessing processing = postProcessor(sections.tree("post_processor"), content -> {
            Integer id = ids.get(content);
            return id != null ? id : model.id(content);
        });
        return new HfTokenizer(model, added, new AddedVocabulary(added, normalizer), preTokenizer, processing);
    }

    private static List<AddedToken> readAddedTokens(JsonElement tree) {
        List<AddedToken> tokens = new ArrayList<>();
        if (tree == null) {
            return tokens;
        }
        for (JsonElement element : tree.getAsJsonArray()) {
            JsonObject t = element.getAsJsonObject();
            tokens.add(new AddedToken(t.get("id").getAsInt(), t.get("content").getAsString(),
                    bool(t, "special", false), bool(t, "single_word", false), bool(t, "lstrip", false),
                    bool(t, "rstrip", false), bool(t, "normalized", true)));
        }
        return tokens;
    }

    private static Normalizer normalizer(JsonElement tree) throws IOException {
        if (tree == null) {
            return null;
        }
        JsonObject n = tree.getAsJsonObject();
        String type = string(n, "type");
        return switch (type) {
            case "NFC" -> Normalizer.unicode(java.text.Normalizer.Form.NFC);
            case "NFD" -> Normalizer.unicode(java.text.Normalizer.Form.NFD);
            case "NFKC" -> Normalizer.unicode(java.text.Normalizer.Form.NFKC);
            case "NFKD" -> Normalizer.unicode(java.text.Normalizer.Form.NFKD);
            case "Lowercase" -> Normalizer.lowercase();
            case "Prepend" -> Normalizer.prepend(string(n, "prepend"));
            case "Strip" -> Normalizer.strip(bool(n, "strip_left", true), bool(n, "strip_right", true));
            case "Replace" -> Normalizer.replace(pattern(n.getAsJsonObject("pattern")), string(n, "content"));
            case "Sequence" -> {
                List<Normalizer> steps = new ArrayList<>();
                for (JsonElement step : n.getAsJsonArray("normalizers")) {
                    Normalizer s = normalizer(step);
                    if (s != null) {
                        steps.add(s);
                    }
                }
                yield steps.isEmpty() ? null : steps.size() == 1 ? steps.getFirst() : Normalizer.sequence(steps);
            }
            default -> throw new IOException("normalizer type " + type + " is not supported");
        };
    }

    private static PreTokenizer preTokenizer(JsonElement tree) throws IOException {
        if (tree == null) {
            return null;
        }
        JsonObject p = tree.getAsJsonObject();
        String type = string(p, "type");
        return switch (type) {
            case "Split" -> new RegexSplitter(pattern(p.getAsJsonObject("pattern")),
                    SplitBehavior.fromJson(string(p, "behavior")), bool(p, "invert", false));
            case "ByteLevel" -> new ByteLevelPreTokenizer(bool(p, "add_prefix_space", true), bool(p, "use_regex", true));
            case "Sequence" -> {
                List<PreTokenizer> steps = new ArrayList<>();
                for (JsonElement step : p.getAsJsonArray("pretokenizers")) {
                    PreTokenizer s = preTokenizer(step);
                    if (s != null) {
                        steps.add(s);
                    }
                }
                yield steps.isEmpty() ? null : steps.size() == 1 ? steps.getFirst() : PreTokenizer.sequence(steps);
            }
            default -> throw new IOException("pre_tokenizer type " + type + " is not supported");
        };
    }

    /** Kiln streams text as bytes, which needs the byte-level decoder (every BPE vocabulary Kiln serves has it). */
    private static void requireByteLevelDecoder(JsonElement tree) throws IOException {
        if (tree == null) {
            throw new IOException("a tokenizer without a decoder is not supported (expected ByteLevel)");
        }
        String type = string(tree.getAsJsonObject(), "type");
        if (!type.equals("ByteLevel")) {
            throw new IOException("decoder type " + type + " is not supported (expected ByteLevel)");
        }
    }

    private interface IdLookup {
        int id(String content);
    }

    private static PostProcessing postProcessor(JsonElement tree, IdLookup ids) throws IOException {
        if (tree == null) {
            return PostProcessing.NONE;
        }
        JsonObject p = tree.getAsJsonObject();
        String type = string(p, "type");
        return switch (type) {
            case "ByteLevel" -> PostProcessing.NONE;
            case "TemplateProcessing" -> template(p);
            case "BertProcessing", "RobertaProcessing" -> new PostProcessing(
                    new int[] {p.getAsJsonArray("cls").get(1).getAsInt()},
                    new int[] {p.getAsJsonArray("sep").get(1).getAsInt()});
            case "Sequence" -> {
                PostProcessing result = PostProcessing.NONE;
                for (JsonElement step : p.getAsJsonArray("processors")) {
                    result = postProcessor(step, ids).around(result);
                }
                yield result;
            }
            default -> throw new IOException("post_processor type " + type + " is not supported");
        };
    }

    /** The {@code single} template: special tokens before sequence {@code A} are the prefix, those after it the suffix. */
    private static PostProcessing template(JsonObject p) throws IOException {
        JsonObject specials = p.has("special_tokens") ? p.getAsJsonObject("special_tokens") : new JsonObject();
        List<Integer> prefix = new ArrayList<>();
        List<Integer> suffix = new ArrayList<>();
        boolean seenSequence = false;
        for (JsonElement item : p.getAsJsonArray("single")) {
            JsonObject piece = item.getAsJsonObject();
            if (piece.has("Sequence")) {
                seenSequence = true;
                continue;
            }
            if (!piece.has("SpecialToken")) {
                throw new IOException("TemplateProcessing piece " + piece + " is neither Sequence nor SpecialToken");
            }
            String name = string(piece.getAsJsonObject("SpecialToken"), "id");
            JsonObject special = specials.getAsJsonObject(name);
            if (special == null) {
                throw new IOException("TemplateProcessing names special token " + name + " without defining it");
            }
            for (JsonElement id : special.getAsJsonArray("ids")) {
                (seenSequence ? suffix : prefix).add(id.getAsInt());
            }
        }
        return new PostProcessing(prefix.stream().mapToInt(Integer::intValue).toArray(),
                suffix.stream().mapToInt(Integer::intValue).toArray());
    }

    private static Pattern pattern(JsonObject pattern) throws IOException {
        if (pattern.has("Regex")) {
            return OnigurumaPatterns.compile(pattern.get("Regex").getAsString());
        }
        if (pattern.has("String")) {
            return Pattern.compile(Pattern.quote(pattern.get("String").getAsString()));
        }
        throw new IOException("pattern " + pattern + " is neither Regex nor String");
    }

    private static String string(JsonObject object, String name) throws IOException {
        JsonElement value = object.get(name);
        if (value == null || value.isJsonNull()) {
            throw new IOException("missing \"" + name + "\" in " + object);
        }
        return value.getAsString();
    }

    private static boolean bool(JsonObject object, String name, boolean fallback) {
        JsonElement value = object.get(name);
        return value == null || value.isJsonNull() ? fallback : value.getAsBoolean();
    }
}
