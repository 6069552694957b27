# Everything Kiln ships: what `kiln serve` runs.
include core
include server
include console
