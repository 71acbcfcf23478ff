"""One thin servicer per service: proto ⇄ domain, nothing else."""
