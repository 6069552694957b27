# The command-line jobs (generate, bench, synth), run inside the container by the launcher; with the CUDA backend,
# which `--backend cuda` selects (without a GPU it stays inactive and says so in one line).
include cuda
bundle dev.kiln:kiln-tokenizer
bundle info.picocli:picocli
bundle dev.kiln:kiln-cli
