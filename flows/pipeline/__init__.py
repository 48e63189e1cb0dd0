"""The Prefect pipeline: per clan fetch → land, then transform (dbt once) → monitor.

Modules (import them directly; this package does not import Prefect, so that
:func:`flows.pipeline.runtime.configure_prefect` can run first):

* :mod:`flows.pipeline.ingest` - the flows ``clash-ingest``, ``clash-ingest-clan``,
  ``clash-monitor``;
* :mod:`flows.pipeline.tasks` - each phase as a Prefect task (name, retries, timeout);
* :mod:`flows.pipeline.phases` - what each phase does, with its checkpoint rows;
* :mod:`flows.pipeline.restore` - restore points: a failed run leaves the marts as
  they were;
* :mod:`flows.pipeline.options`, :mod:`flows.pipeline.model` - parameters and values;
* :mod:`flows.pipeline.deployments` - ``prefect.yaml`` for ``clash-pipeline serve``;
* :mod:`flows.pipeline.runtime` - Prefect's local, offline, quiet environment.
"""
