/**
 * The inference engine without OSGi: {@link dev.kiln.engine.InferenceEngineCore} over a loaded model, sized by
 * {@link dev.kiln.engine.EngineSettings}. For embedding and tests; in the container the engine is the
 * {@code InferenceEngine} service.
 */
@Export
@Version("1.2.0")
package dev.kiln.engine;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
