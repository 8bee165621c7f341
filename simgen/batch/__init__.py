"""Batch generation: ``simgen batch PLAN.yaml --out DIR`` runs many scenarios x episodes in parallel, resumably.

Modules: :mod:`~simgen.batch.plan` (the strict plan file, its deterministic expansion into episodes and its hash),
:mod:`~simgen.batch.worker` (one episode attempt inside a worker process or Ray actor, and the fault-injection
test hook), :mod:`~simgen.batch.executor` (local process pool and Ray slots, timeouts), :mod:`~simgen.batch.manifest`
(crash-safe manifest and the index table), :mod:`~simgen.batch.runner` (the batch itself: resume, retries,
progress, summary), :mod:`~simgen.batch.cli` and :mod:`~simgen.batch.bench`.  Documented in docs/batch.md.

Importing this package is light: no numpy, open3d or ray (worker processes set thread limits before those load).
"""
