/**
 * The jobs behind Kiln's command line ({@code generate}, {@code bench}, {@code synth}). Each is a service
 * {@code java.util.function.Function<String[], Integer>} with the property {@code kiln.command}: the launcher boots
 * the container, calls the job with the command's arguments and exits with its result. Only {@code java.*} types
 * cross that boundary, so the launcher shares no class with the bundles.
 */
package dev.kiln.cli;
