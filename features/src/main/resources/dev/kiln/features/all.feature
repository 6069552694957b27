# Everything Kiln ships: what `kiln serve` runs.
include core
include cpu
include server
include console
include tools
