/**
 * The tokenizer service: finds and loads the byte-level BPE tokenizer and chat template of a model folder.
 */
package dev.kiln.tokenizer;
