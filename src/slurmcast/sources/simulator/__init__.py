"""The simulator source: a deterministic simulated Slurm cluster, served as a ``Source``.

``cluster`` is the pure, seeded, tick-based model (``SimulatedCluster``), built
from ``model`` (its nodes and jobs) and ``workload`` (what its users submit);
``source`` maps wall-clock time onto it (``SimulatorSource``).
"""
