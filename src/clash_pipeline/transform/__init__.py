"""The transform: dbt run in-process (:mod:`.dbt`) inside a restore point (:mod:`.restore`)."""
