"""The Prefect pipeline: per clan fetch → land, then transform (dbt once) → monitor.

Modules (import them directly; this package does not import Prefect, so that
:func:`clash_pipeline.orchestration.runtime.configure_prefect` can run first):

* :mod:`clash_pipeline.orchestration.flows` - the flows ``clash-ingest``, ``clash-ingest-clan``,
  ``clash-monitor``;
* :mod:`clash_pipeline.orchestration.tasks` - each phase as a Prefect task (name, retries, timeout);
* :mod:`clash_pipeline.orchestration.phases` - what each phase does, with its checkpoint rows
  (one module per phase; fetch and land are :mod:`clash_pipeline.ingest.run`, as for the CLI);
* :mod:`clash_pipeline.transform.restore` - restore points: a failed run leaves the marts as
  they were;
* :mod:`clash_pipeline.orchestration.options`, :mod:`clash_pipeline.orchestration.model` -
  parameters and values;
* :mod:`clash_pipeline.orchestration.deployments` - ``prefect.yaml`` for ``clash-pipeline serve``;
* :mod:`clash_pipeline.orchestration.runtime` - Prefect's local, offline, quiet environment.
"""
