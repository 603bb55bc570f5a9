"""The pure core: the model, plans, option checks and the ports. No I/O, no clock."""
