/**
 * Everything between raw text and the words the BPE model encodes: added-token matching, normalization,
 * pre-tokenization, and the translation of the regular expressions that drive it.
 */
package dev.kiln.tokenizer.text;
