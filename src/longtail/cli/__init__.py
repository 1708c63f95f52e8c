"""Command line: YAML configs become library arguments here and nowhere else."""
