# The command-line jobs (generate, bench, synth), run inside the container by the launcher.
include cpu
bundle info.picocli:picocli
bundle dev.kiln:kiln-cli
