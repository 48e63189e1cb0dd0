"""The anomaly monitor: Great Expectations suites over the health mart and the marts.

* :mod:`clash_pipeline.monitor.checks`: the checks (one GX query asset, suite and
  validation definition each) and the SQL bounds passed as expectation parameters;
* :mod:`clash_pipeline.monitor.context`: (re)writes the committed GX file context in ``gx/``;
* :mod:`clash_pipeline.monitor.run`: one monitor run, from the expectation parameters to the alerts;
* :mod:`clash_pipeline.monitor.findings`: turns the checkpoint's results into one finding per
  clan and check;
* :mod:`clash_pipeline.monitor.alerts`: the alert lifecycle in ``ops.alerts`` and the webhook.

Great Expectations is imported lazily (it takes seconds to import).
"""
