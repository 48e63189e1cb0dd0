"""The pipeline's phases as plain functions (:mod:`clash_pipeline.orchestration.tasks` wraps them).

Each phase takes the batch's :class:`~clash_pipeline.orchestration.model.RunContext`
(settings and a DSN, never a live client or connection), writes its checkpoint
rows to ``ops.ingest_logs`` through
:class:`~clash_pipeline.warehouse.runs.PhaseAttempt` (one per attempt:
``retrying`` when another attempt follows, else ``failed`` or ``succeeded``) and
returns plain values. One module per phase or concern:

* :mod:`.context` - the batch's settings, database and API;
* :mod:`.locks` - one run per clan, one dbt build per warehouse;
* :mod:`.runs` - open and close each clan's ``ops.ingest_runs`` row;
* :mod:`.ingest` - fetch and land one clan (:mod:`clash_pipeline.ingest.run`, the
  same path as ``clash-pipeline fetch``);
* :mod:`.transform` - dbt once for the batch inside a restore point, then publish
  or roll back;
* :mod:`.monitor` - the health row of each run and the anomaly checks;
* :mod:`.report` - the summary table of a flow run;
* :mod:`.common` - the run logger and the retry rule the phases share.
"""
