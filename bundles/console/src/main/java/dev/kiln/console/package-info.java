/**
 * The Kiln page of the Felix Web Console, {@code /system/console/kiln}: server-rendered facts and forms, a JSON
 * endpoint with the live samples, and the static script that draws the plots. The console authenticates every
 * request; this package adds the CSRF defence its own forms need.
 */
package dev.kiln.console;
