"""Pure parsers for the output of Slurm's command-line tools (squeue, sinfo, sacct, scontrol)."""
