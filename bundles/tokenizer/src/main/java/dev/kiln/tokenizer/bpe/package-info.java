/**
 * The BPE model itself: the byte-level alphabet, the merge rules and the merge algorithm that turns one word into
 * vocabulary ids.
 */
package dev.kiln.tokenizer.bpe;
