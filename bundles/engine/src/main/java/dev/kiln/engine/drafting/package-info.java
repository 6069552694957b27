/**
 * Building blocks for speculative proposers that run a model of their own (a draft model, an MTP module): a paged
 * KV cache's bookkeeping per sequence, with roll-back to what a sequence's tokens still confirm and eviction of the
 * least recently drafted sequences, and the batched forward over several sequences' new tokens.
 */
@Export
@Version("1.0.0")
package dev.kiln.engine.drafting;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
