package dev.kiln.tokenizer.text;

/**
 * A token matched in the raw text before pre-tokenization (an entry of {@code added_tokens}).
 *
 * @param id         its id
 * @param content    the text it stands for
 * @param special    whether it is a control token (dropped when decoding with special tokens skipped)
 * @param singleWord whether it matches only where no letter, digit or underscore touches it
 * @param lstrip     whether it swallows whitespace on its left
 * @param rstrip     whether it swallows whitespace on its right
 * @param normalized whether it is matched in the normalized text rather than the raw text
 */
public record AddedToken(int id, String content, boolean special, boolean singleWord, boolean lstrip,
                         boolean rstrip, boolean normalized) {}
