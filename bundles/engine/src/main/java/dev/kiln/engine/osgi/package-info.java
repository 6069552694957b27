/** The engine as a Declarative Services component: configuration, model loading from registered services, dynamic bindings. */
package dev.kiln.engine.osgi;
