/**
 * Hugging Face files ({@code tokenizer.json}, {@code tokenizer_config.json}) read into a working tokenizer, with
 * decoding and streaming detokenization.
 */
package dev.kiln.tokenizer.hf;
