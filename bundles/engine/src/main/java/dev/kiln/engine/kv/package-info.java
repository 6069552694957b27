/** The paged KV cache's block manager: block tables, reference counts and the prefix cache. */
package dev.kiln.engine.kv;
