/**
 * Tokenizers, incremental detokenization and chat templates.
 */
@Export
@Version("1.1.0")
package dev.kiln.api.tokenizer;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
