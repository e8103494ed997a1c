"""slurmcast: a real-time event gateway for Slurm HPC clusters."""

__version__ = "0.1.0"
