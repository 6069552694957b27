/**
 * Building blocks shared by the architectures of this bundle and by later ones: rotary frequencies with their
 * scaling rules, checkpoint weights validated against the configuration, the checks every forward batch passes,
 * and the language-model head that turns selected hidden states into logits.
 */
@Export
@Version("1.1.0")
package dev.kiln.models;

import org.osgi.annotation.bundle.Export;
import org.osgi.annotation.versioning.Version;
