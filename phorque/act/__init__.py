"""The act half: one evaluation (read, decide, apply) and the records of what Phorque owns."""
