package dev.kiln.features;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.SequencedSet;

/**
 * Resolves a named feature to the ordered list of bundles it stands for.
 *
 * <p>A feature is a text resource {@code dev/kiln/features/NAME.feature} with one directive per line:
 * {@code include OTHER} pulls in another feature's bundles at that point, {@code bundle GROUP:ARTIFACT} adds a
 * bundle; {@code #} starts a comment. A bundle listed twice keeps its first place, so the resulting order is the
 * start order. Versions live in the Maven build, not here: the distribution stores each bundle as
 * {@code ARTIFACT.jar}.
 */
public final class Features {
    private static final String PREFIX = "dev/kiln/features/";

    private Features() {}

    /** A bundle by its Maven coordinates. */
    public record BundleRef(String groupId, String artifactId) {
        /** The file name the distribution stores the bundle under. */
        public String fileName() {
            return artifactId + ".jar";
        }

        @Override
        public String toString() {
            return groupId + ":" + artifactId;
        }
    }

    /**
     * The bundles of a feature and everything it includes, in start order.
     *
     * @throws IllegalArgumentException if the feature, or one it includes, does not exist, includes itself, or
     *                                  has a malformed line
     */
    public static List<BundleRef> resolve(String feature) {
        SequencedSet<BundleRef> bundles = new LinkedHashSet<>();
        collect(feature, new ArrayDeque<>(), bundles);
        return List.copyOf(bundles);
    }

    /** The union of several features' bundles, in order of first appearance. */
    public static List<BundleRef> resolve(List<String> features) {
        SequencedSet<BundleRef> bundles = new LinkedHashSet<>();
        for (String f : features) bundles.addAll(resolve(f));
        return List.copyOf(bundles);
    }

    private static void collect(String feature, Deque<String> path, SequencedSet<BundleRef> out) {
        if (path.contains(feature)) {
            throw new IllegalArgumentException("feature '" + feature + "' includes itself via " + path);
        }
        path.push(feature);
        List<String> lines = read(feature);
        for (int i = 0; i < lines.size(); i++) {
            String line = lines.get(i).strip();
            if (line.isEmpty() || line.startsWith("#")) continue;
            String[] parts = line.split("\\s+");
            String where = feature + ".feature line " + (i + 1);
            if (parts.length != 2) throw new IllegalArgumentException(where + ": expected 'include NAME' or 'bundle GROUP:ARTIFACT', found '" + line + "'");
            switch (parts[0]) {
                case "include" -> collect(parts[1], path, out);
                case "bundle" -> {
                    String[] ga = parts[1].split(":");
                    if (ga.length != 2 || ga[0].isEmpty() || ga[1].isEmpty()) {
                        throw new IllegalArgumentException(where + ": expected GROUP:ARTIFACT, found '" + parts[1] + "'");
                    }
                    out.add(new BundleRef(ga[0], ga[1]));
                }
                default -> throw new IllegalArgumentException(where + ": unknown directive '" + parts[0] + "'");
            }
        }
        path.pop();
    }

    private static List<String> read(String feature) {
        if (!feature.matches("[a-z][a-z0-9-]*")) throw new IllegalArgumentException("invalid feature name '" + feature + "'");
        InputStream in = Features.class.getClassLoader().getResourceAsStream(PREFIX + feature + ".feature");
        if (in == null) throw new IllegalArgumentException("no feature named '" + feature + "'");
        try (BufferedReader r = new BufferedReader(new InputStreamReader(in, StandardCharsets.UTF_8))) {
            List<String> lines = new ArrayList<>();
            for (String l; (l = r.readLine()) != null; ) lines.add(l);
            return lines;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
