-- Every (metric_name, metric_window) pair in marts.metrics is one the
-- metric catalogue declares (metric_catalogue.metric_windows, `|`-separated),
-- and every declared pair has rows once the clan has a snapshot with a
-- profile, a first change and a stint (checked over the recent rows only).

{{ config(severity='error') }}

with

recent_metrics as (

    select distinct
        metric_name,
        metric_window

    from {{ ref('metrics') }} as metrics
    -- each clan's last staging_test_days days (macros/recent_window.sql)
    where {{ recent_window('as_of', per='clan_tag', alias='metrics') }}

),

declared as (

    select
        metric_catalogue.metric_name,
        declared_window.metric_window

    from {{ ref('metric_catalogue') }} as metric_catalogue
    cross join lateral unnest(
        string_to_array(metric_catalogue.metric_windows, '|')
    ) as declared_window (metric_window)

),

undeclared as (

    select
        recent_metrics.metric_name,
        recent_metrics.metric_window,
        'in metrics, not in the catalogue' as problem

    from recent_metrics
    left join declared
        on
            recent_metrics.metric_name = declared.metric_name
            and recent_metrics.metric_window = declared.metric_window
    where declared.metric_name is null

),

missing as (

    select
        declared.metric_name,
        declared.metric_window,
        'in the catalogue, never computed' as problem

    from declared
    left join recent_metrics
        on
            declared.metric_name = recent_metrics.metric_name
            and declared.metric_window = recent_metrics.metric_window
    where
        recent_metrics.metric_name is null
        and exists (
            select any_recent.metric_name
            from recent_metrics as any_recent
        )
        -- last seen needs a first observed change
        and declared.metric_name <> 'days_since_last_seen'

)

select * from undeclared
union all
select * from missing
