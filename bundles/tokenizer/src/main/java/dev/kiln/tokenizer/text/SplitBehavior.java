package dev.kiln.tokenizer.text;

/** What a {@link RegexSplitter} does with the text its pattern matches. */
public enum SplitBehavior {
    /** Drops the matches. */
    REMOVED,
    /** Makes every match a piece of its own. */
    ISOLATED,
    /** Appends every match to the piece before it. */
    MERGED_WITH_PREVIOUS,
    /** Prepends every match to the piece after it. */
    MERGED_WITH_NEXT,
    /** Joins runs of consecutive matches (and of consecutive gaps) into one piece each. */
    CONTIGUOUS;

    /** Parses the {@code behavior} spelling of a {@code tokenizer.json}, e.g. {@code MergedWithPrevious}. */
    public static SplitBehavior fromJson(String name) {
        return switch (name) {
            case "Removed" -> REMOVED;
            case "Isolated" -> ISOLATED;
            case "MergedWithPrevious" -> MERGED_WITH_PREVIOUS;
            case "MergedWithNext" -> MERGED_WITH_NEXT;
            case "Contiguous" -> CONTIGUOUS;
            default -> throw new IllegalArgumentException("unknown split behavior " + name);
        };
    }
}
