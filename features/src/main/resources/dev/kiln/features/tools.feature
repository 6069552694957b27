# The command-line jobs (generate, bench, synth), run inside the container by the launcher.
include cpu
bundle dev.kiln:kiln-tokenizer
bundle info.picocli:picocli
bundle dev.kiln:kiln-cli
