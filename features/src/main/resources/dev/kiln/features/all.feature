# Everything Kiln ships: what `kiln serve` runs.
include core
include cpu
include cuda
include server
include console
include tools
