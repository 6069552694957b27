/**
 * Chat templates: Jinja templates of transformers rendered by Jinjava with the Python behaviour they rely on.
 */
package dev.kiln.tokenizer.chat;
