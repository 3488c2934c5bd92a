"""Scale-out: one sweep spread over several workers (GPUs, hosts) with one writer.

- ``--shard I/N`` (in :mod:`bench.runner`) splits a sweep by case index for job arrays, and
  :mod:`bench.scale.merge` joins the shard results into one run.
- :mod:`bench.scale.local` runs one worker process per GPU of this host.
- :mod:`bench.scale.ray_executor` runs one long-lived Ray actor per GPU of a cluster.

In both executors the workers only build and time cases (:class:`bench.scale.worker.Worker`);
the driver (:class:`bench.scale.driver.Sweep`) alone writes the run directory, so the crash
safety and ``--resume`` of a plain run hold unchanged. Nothing here imports torch, CUDA or ray at
module level.
"""
