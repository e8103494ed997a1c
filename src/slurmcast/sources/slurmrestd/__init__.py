"""The slurmrestd source: Slurm's REST API, over TCP (JWT) or a unix socket."""
